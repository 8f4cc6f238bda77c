#!/usr/bin/env python3
"""PyTorch CPU side of `appliance bench embed`: all-MiniLM-L6-v2 through
sentence-transformers, the way people run it (`encode` sorts the texts by
length, pads each batch to its longest, mean-pools, L2-normalises).

    embed_torch.py --model-dir DIR --texts FILE.json [--batches 1,8,32,64]
        Embeds every text once per batch size (after a warm-up) and prints
        {"rows": [{"batch", "sentences", "seconds", "sentences_per_sec"}]}.

    embed_torch.py --model-dir DIR --texts FILE.json --serve
        For the Rust bench, which alternates with its own runs: prints a
        ready line, then answers each stdin line {"batch": N} with one JSON
        line {"batch", "sentences", "seconds"}, and {"embed": K} with the
        embeddings of the first K texts (to check both sides agree).

Fully offline: the model directory holds config.json, tokenizer.json and
model.safetensors only (sentence-transformers adds mean pooling itself).
Two intra-op threads, one per core of the appliance box.
"""

import argparse
import json
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

THREADS = 2
# sentence-transformers' max_seq_length for this model; the Rust side
# truncates at the same length.
MAX_TOKENS = 256


def load(model_dir):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(THREADS)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = MAX_TOKENS
    model.eval()
    return torch, model


def encode(model, texts, batch):
    return model.encode(
        texts,
        batch_size=batch,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


def timed(model, texts, batch):
    start = time.perf_counter()
    encode(model, texts, batch)
    seconds = time.perf_counter() - start
    return {"batch": batch, "sentences": len(texts), "seconds": seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--texts", required=True, help="JSON list of strings")
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--serve", action="store_true")
    args = ap.parse_args()

    with open(args.texts, encoding="utf-8") as f:
        texts = json.load(f)
    try:
        torch, model = load(args.model_dir)
    except ImportError as e:
        print(json.dumps({"error": f"PyTorch stack not installed: {e}"}), flush=True)
        return 2
    import sentence_transformers

    encode(model, texts[:64], 32)  # warm-up: first-call allocations, oneDNN init
    info = {
        "ready": True,
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "threads": torch.get_num_threads(),
    }
    if not args.serve:
        rows = []
        for batch in (int(b) for b in args.batches.split(",")):
            row = timed(model, texts, batch)
            row["sentences_per_sec"] = row["sentences"] / row["seconds"]
            rows.append(row)
        print(json.dumps({**info, "rows": rows}, indent=2))
        return 0

    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "embed" in request:
            vectors = encode(model, texts[: request["embed"]], 32)
            reply = {"embeddings": vectors.tolist()}
        else:
            reply = timed(model, texts, request["batch"])
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
