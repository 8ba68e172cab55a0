from deepscaler.data.dedup import ExactDuplicates, NearDuplicates, shingles
from deepscaler.data.text import ngrams, normal_form, tokens

AIME_1 = ("In an increasing sequence of four positive integers, the first three terms form an arithmetic progression, "
          "the last three terms form a geometric progression, and the first and fourth terms differ by $30.$ "
          "Find the sum of the four terms.")
AIME_1_COPY = ("In an increasing sequence of four positive integers, the first three terms form an arithmetic "
               "progression, the last three terms form a geometric progression, and the first and fourth terms "
               "differ by $30$. Find the sum of the four terms.")
OTHER = "Find the number of ordered pairs $(a,b)$ of integers such that $|a + bi| \\le 5.$"


def test_the_normal_form_ignores_case_spacing_and_latex_spacing():
    assert normal_form("Compute  $\\dfrac{1}{2}\\,x + Y$ .") == normal_form("compute $\\frac{1}{2} x+y$.")
    assert normal_form("$a \\le b$, \\quad $1 \\cdots n$") == normal_form("$a\\leq b$,$1\\dots n$")
    assert normal_form("$x = 1$") != normal_form("$x = 2$")
    assert normal_form("a \\\\ b") == "a\\\\ b"  # a row break is not the spacing command `\ `


def test_tokens_keep_the_mathematics():
    assert tokens("Let $f(x) = 2x^2 - 3.5$; find $\\sqrt{f(4)}$.") == [
        "let", "f", "x", "=", "2", "x", "^", "2", "-", "3.5", "find", "\\sqrt", "f", "4"]
    assert ngrams(["a", "b", "c"], 2) == {"a b", "b c"}
    assert ngrams(["short"], 8) == {"short"}
    assert shingles(["a", "b"], 3) == {"a b"}


def test_exact_duplicates_keep_the_first_occurrence():
    exact = ExactDuplicates()
    assert exact.check(normal_form("What is $1+1$?"), 0) is None
    assert exact.check(normal_form("what is $1 + 1$ ?"), 1) == 0
    assert exact.check(normal_form("What is $1+2$?"), 2) is None
    assert exact.check(normal_form("WHAT IS $1+2$?"), 3) == 2


def test_near_duplicates_are_found_and_the_first_is_kept():
    near = NearDuplicates(threshold=0.9)
    assert near.check(tokens(AIME_1), 10) is None
    assert near.check(tokens(OTHER), 11) is None
    key, similarity = near.check(tokens(AIME_1_COPY), 12)
    assert key == 10 and 0.9 <= similarity <= 1.0
    question = "Find the largest of the four terms if their sum is even."
    assert near.check(tokens(AIME_1.replace("Find the sum of the four terms.", question)), 13) is None


def test_near_duplicate_decisions_depend_only_on_the_inputs_and_seed():
    texts = [AIME_1, OTHER, AIME_1_COPY, OTHER.replace("5.", "5 .")] * 2
    runs = []
    for _ in range(2):
        near = NearDuplicates(threshold=0.8, seed=7)
        runs.append([near.check(tokens(text), key) for key, text in enumerate(texts)])
    assert runs[0] == runs[1]
    assert [None if found is None else found[0] for found in runs[0]] == [None, None, 0, 1, 0, 1, 0, 1]


def test_accept_can_refuse_a_match():
    near = NearDuplicates(threshold=0.9)
    near.check(tokens(AIME_1), 0)
    assert near.check(tokens(AIME_1_COPY), 1, accept=lambda earlier: False) is None
    assert near.rejected == 1
    assert near.check(tokens(AIME_1_COPY), 2)[0] == 0
