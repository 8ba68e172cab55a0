"""The memory model and the plan as pure functions: parameter counts against Hugging Face's models, terms against
their formulas by hand, and the recipe's verdicts."""

import json

import pytest
import torch

from deepscaler.config import load_config
from deepscaler.planner.architecture import KNOWN, UnknownArchitecture, dims_from_config, model_dims
from deepscaler.planner.memory import GIB, VLLM_ASLEEP_BYTES, Setup, predict
from deepscaler.planner.plan import knobs_from_config, plan_stages, suggestions
from deepscaler.trainer.config import TrainConfig

RECIPE = "configs/deepscaler-1.5b.yaml"
R1_DISTILL = KNOWN["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"]


@pytest.mark.parametrize("model_type", ["qwen2", "qwen3", "llama"])
@pytest.mark.parametrize("tied", [True, False])
def test_parameter_count_is_hugging_faces(model_type, tied):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(model_type, vocab_size=1000, hidden_size=96, intermediate_size=200,
                                  num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2, head_dim=16,
                                  tie_word_embeddings=tied)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    real = sum(p.numel() for p in model.parameters())  # a tied weight is one parameter
    assert dims_from_config(config.to_dict()).parameters() == real


def test_recipe_model_is_the_hub_models_size():
    assert R1_DISTILL.parameters() == 1_777_088_000  # the 1.78B the hub reports: untied 151936 × 1536 head


def test_dims_from_a_local_folder_and_unknown_models(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
        "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
        "tie_word_embeddings": False}))
    assert model_dims(str(tmp_path)) == R1_DISTILL
    with pytest.raises(UnknownArchitecture, match="not a known model"):
        model_dims("nobody/no-such-model")
    with pytest.raises(UnknownArchitecture, match="no config.json"):
        model_dims(str(tmp_path / ".."))


def test_terms_follow_their_formulas():
    p = R1_DISTILL.parameters()
    ddp = predict(R1_DISTILL, Setup(gpus=8, strategy="ddp", compute_dtype="bfloat16"), tokens=4096)
    assert ddp.terms["weights"] == 4 * p and ddp.terms["optimizer"] == 8 * p
    assert ddp.terms["gradients"] == 8 * p  # DDP: the gradients and its all-reduce buckets
    assert ddp.terms["reference"] == 2 * p  # bfloat16
    fsdp = predict(R1_DISTILL, Setup(gpus=8, strategy="fsdp", compute_dtype="bfloat16"), tokens=4096)
    assert fsdp.terms["weights"] == 4 * p / 8 and fsdp.terms["gradients"] == 4 * p / 8
    assert fsdp.terms["optimizer"] == 8 * p / 8 and fsdp.terms["reference"] == 2 * p / 8
    offloaded = predict(R1_DISTILL, Setup(reference="offload"), tokens=4096)
    assert offloaded.terms["reference"] == 0
    # Activations: linear in tokens; checkpointing keeps one layer's in full instead of 28.
    plain = predict(R1_DISTILL, Setup(compute_dtype="bfloat16"), tokens=8192).terms["activations"]
    assert plain == 2 * predict(R1_DISTILL, Setup(compute_dtype="bfloat16"), tokens=4096).terms["activations"]
    checkpointed = predict(R1_DISTILL, Setup(compute_dtype="bfloat16", checkpointing=True), tokens=8192)
    assert 5 * checkpointed.terms["activations"] < plain


def test_vllm_share_during_rollout_and_update():
    share = 0.5 * 80 * GIB
    awake = predict(R1_DISTILL, Setup(vllm_share_bytes=share), tokens=4096)
    asleep = predict(R1_DISTILL, Setup(vllm_share_bytes=share, vllm_sleeps=True), tokens=4096)
    assert awake.terms["vLLM"] == share and asleep.terms["vLLM"] == VLLM_ASLEEP_BYTES
    assert awake.phases["rollout"] == asleep.phases["rollout"]  # vLLM has its whole share while it generates
    assert awake.phases["update"] - asleep.phases["update"] == share - VLLM_ASLEEP_BYTES


def test_recipe_fits_eight_80gb_gpus_at_every_stage():
    config = load_config(TrainConfig, RECIPE)
    stages = plan_stages(R1_DISTILL, config, knobs_from_config(config, gpus=8, gpu_memory_gb=80))
    assert [s.name for s in stages] == ["8k", "16k", "24k"]
    assert all(s.fits for s in stages)
    # The 24K stage's longest sequence (1024 prompt + 24576 response) fits one micro-batch of the recipe's 32768.
    assert all(s.tokens == 32768 for s in stages)


def test_one_16gb_gpu_does_not_fit_and_the_suggestion_does():
    config = load_config(TrainConfig, RECIPE)
    knobs = knobs_from_config(config, gpus=1, gpu_memory_gb=16)
    assert not any(s.fits for s in plan_stages(R1_DISTILL, config, knobs))
    (advice,) = suggestions(R1_DISTILL, config, knobs)
    assert advice == "--gpus 8 distributed.strategy=fsdp"
    fixed = load_config(TrainConfig, RECIPE, ["distributed.strategy=fsdp"])
    assert all(s.fits for s in plan_stages(R1_DISTILL, fixed, knobs_from_config(fixed, gpus=8, gpu_memory_gb=16)))


def test_suggestions_name_each_kind_of_fix():
    config = load_config(TrainConfig, RECIPE, ["model.gradient_checkpointing=false", "rollout.enable_sleep_mode=false",
                                               "distributed.strategy=fsdp"])
    knobs = knobs_from_config(config, gpus=8, gpu_memory_gb=80)
    assert not all(s.fits for s in plan_stages(R1_DISTILL, config, knobs))
    advice = suggestions(R1_DISTILL, config, knobs)
    assert "model.gradient_checkpointing=true" in advice
    for fix in advice:  # each one alone makes every stage fit
        changed = load_config(TrainConfig, RECIPE, [*["model.gradient_checkpointing=false",
                                                      "rollout.enable_sleep_mode=false", "distributed.strategy=fsdp"],
                                                    *([fix] if not fix.startswith("--") else [])])
        gpus = int(fix.split()[1]) if fix.startswith("--gpus") else 8
        assert all(s.fits for s in plan_stages(R1_DISTILL, changed, knobs_from_config(changed, gpus, 80))), fix


def test_when_no_change_alone_fits_a_combination_is_suggested():
    changes = ["model.gradient_checkpointing=false", "rollout.enable_sleep_mode=false", "distributed.strategy=ddp"]
    config = load_config(TrainConfig, RECIPE, changes)
    knobs = knobs_from_config(config, gpus=8, gpu_memory_gb=40)
    # Each alone is not enough; both together are, and nothing more is asked for.
    assert suggestions(R1_DISTILL, config, knobs) == ["model.gradient_checkpointing=true distributed.strategy=fsdp"]
    fixed = load_config(TrainConfig, RECIPE, [*changes, "model.gradient_checkpointing=true",
                                              "distributed.strategy=fsdp"])
    assert all(s.fits for s in plan_stages(R1_DISTILL, fixed, knobs_from_config(fixed, gpus=8, gpu_memory_gb=40)))
