"""Train the Phi-3.5-vision stand-in that sees (synthetic shapes), export it for both runtimes, check it.

    python tools/train_standin.py vision  --work DIR [--steps N]   # stage 1: the vision classifier
    python tools/train_standin.py decoder --work DIR [--steps N]   # stage 2: the decoder (no pixels)
    python tools/train_standin.py bank    --work DIR               # stage 2 (round 3): token-id bank
    python tools/standin/train_bank.py --bank DIR/bank.npz --out T # ... trained anywhere torch runs
    python tools/train_standin.py adopt   --work DIR --from T      # ... back into DIR/decoder-hf
    python tools/train_standin.py export  --work DIR --out OUT     # ORT phi3v + OpenVINO phi3_v folders
    python tools/train_standin.py eval    --out OUT [--scenes N]   # through the real runtimes

Stages 1 and 2 are independent and may run at the same time. Seeds are fixed. See tools/standin/.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "stage",
        choices=[
            "tokenizer",
            "vision",
            "vision-from",
            "vision-eval",
            "decoder",
            "bank",
            "adopt",
            "export",
            "eval",
            "choose-cases",
        ],
    )
    ap.add_argument(
        "--from", dest="source", type=Path, help="vision-from: an ORT folder; adopt: train_bank's out"
    )
    ap.add_argument("--train-examples", type=int, default=800_000, help="bank: training examples")
    ap.add_argument("--work", type=Path, default=Path("/tmp/standin-work"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/standin-out"))
    ap.add_argument("--steps", type=int)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stop", type=int, help="decoder: stop (and save) after this many steps of the schedule")
    ap.add_argument("--resume", type=int, default=0, help="continue the saved stage (round number)")
    ap.add_argument("--tasks", help="decoder: caption,question,json weights (default 0.35,0.4,0.25)")
    ap.add_argument("--questions", help="decoder: color,count,exists,where weights (default equal)")
    ap.add_argument("--per-scene", type=int, default=8, help="decoder: prompts per scene code")
    ap.add_argument("--lr", type=float, help="decoder: peak learning rate")
    ap.add_argument(
        "--layers", type=int, help="decoder: layer count (default 2; a resumed smaller one is grown)"
    )
    ap.add_argument("--seq-mean", action="store_true", help="decoder: loss = mean over answers of their mean")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--scenes", type=int, default=100)
    ap.add_argument("--backends", default="ort,openvino")
    ap.add_argument("--crops", default="1,4")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    from standin import pipeline

    args.work.mkdir(parents=True, exist_ok=True)
    if args.stage == "tokenizer":
        pipeline.tokenizer(args.work)
    elif args.stage == "vision-from":
        pipeline.vision_from_folder(args.work, args.source)
    elif args.stage == "vision-eval":  # held-out scene accuracy of work/vision.pt (and --from FILE)
        from standin.evaluate import vision_accuracy

        print(
            vision_accuracy([args.work / "vision.pt", *([args.source] if args.source else [])], args.scenes)
        )
    elif args.stage == "choose-cases":  # --out edge/assets/models
        from standin.export import write_choose_cases

        write_choose_cases(args.out)
    elif args.stage == "bank":
        pipeline.bank(args.work, args.train_examples, 3000)
    elif args.stage == "adopt":
        pipeline.adopt(args.work, args.source)
    elif args.stage == "vision":
        pipeline.vision(args.work, args.steps or 2000, args.workers, args.resume)
    elif args.stage == "decoder":
        kw = {"per_scene": args.per_scene, "lr": args.lr, "seq_mean": args.seq_mean, "layers": args.layers}
        if args.tasks:
            kw["task_weights"] = tuple(float(x) for x in args.tasks.split(","))
        if args.questions:
            kw["question_weights"] = tuple(float(x) for x in args.questions.split(","))
        pipeline.decoder(args.work, args.steps or 700, args.resume, args.stop, **kw)
    elif args.stage == "export":
        pipeline.export(args.work, args.out)
    else:
        return pipeline.evaluate(
            args.out, args.scenes, args.backends.split(","), [int(c) for c in args.crops.split(",")]
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
