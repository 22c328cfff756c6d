"""examples/vlm_finetune/tiny_vlm.yaml through the CLI: above 90% held-out exact match, and transformers
with AutoProcessor loads the saved model and answers the held-out questions the same way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "vlm_shapes"


def _answer(model, processor, row: dict) -> str:
    """Greedy answer of the saved model to one held-out question, with plain transformers calls."""
    user = row["messages"][0]
    image = Image.open(DATA / user["content"][0]["image"]).convert("RGB")
    prompt = processor.apply_chat_template([user], add_generation_prompt=True)
    inputs = processor(text=prompt, images=[image], return_tensors="pt", add_special_tokens=False)
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False, eos_token_id=im_end)
    return processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_the_vlm_example_learns_what_only_the_images_show_and_transformers_answers_the_same(tmp_path):
    automodel = str(Path(sys.executable).parent / "automodel")
    command = [
        automodel,
        "finetune",
        "vlm",
        "-c",
        "examples/vlm_finetune/tiny_vlm.yaml",
        "--checkpoint.dir",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    assert records[0]["exact_match"] < 1 / 6 and records[-1]["exact_match"] > 0.9
    model_dir = tmp_path / "step_000300" / "model"
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    rows = [json.loads(line) for line in (DATA / "validation.jsonl").read_text().splitlines()]
    predictions = json.loads((tmp_path / "generations.jsonl").read_text().splitlines()[-1])["predictions"]
    assert [_answer(model, processor, row) for row in rows] == [p["prediction"] for p in predictions]
