#!/usr/bin/env python3
# yolo_evolve_train.py - yolo-evolve's launcher of Ultralytics YOLO training
# (the `ultralytics` trainer template, evolve/contract.c).
#
# Trains one candidate with the ultralytics package (YOLOv8, YOLO11): the
# candidate's hyp.yaml (a flat mapping of the package's own argument names,
# as its Tuner evolves them) goes to YOLO(model).train() as keyword
# arguments, so every key reaches the package the way it accepts it. The
# package writes PROJECT/NAME/results.csv (its own columns), which
# yolo-evolve reads epoch by epoch. Plots are off; nothing else is changed.
import argparse
import os
import sys


def parse_args(argv):
    p = argparse.ArgumentParser(description="train one yolo-evolve candidate with ultralytics")
    p.add_argument("--hyp", required=True, help="candidate hyp.yaml")
    p.add_argument("--data", required=True, help="dataset yaml")
    p.add_argument("--cfg", default="", help="model yaml, trained from scratch")
    p.add_argument("--weights", default="", help="weights .pt (loaded into --cfg if both)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--imgsz", type=int, required=True)
    p.add_argument("--device", default="")
    p.add_argument("--project", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    if not args.cfg and not args.weights:
        sys.exit("yolo_evolve_train.py: give --cfg (a model yaml) or --weights")
    import yaml

    with open(args.hyp, encoding="utf-8") as f:
        hyp = yaml.safe_load(f) or {}
    if not isinstance(hyp, dict):
        sys.exit(f"{args.hyp}: not a mapping of hyperparameters")

    from ultralytics import YOLO

    model = YOLO(args.cfg or args.weights)
    if args.cfg and args.weights:
        model.load(args.weights)
    model.train(
        data=args.data,
        epochs=args.epochs,
        batch=args.batch,
        imgsz=args.imgsz,
        device=args.device or None,
        # an absolute project: a relative one would go under the package's runs_dir
        project=os.path.abspath(args.project),
        name=args.name,
        exist_ok=True,
        seed=args.seed % 2**31,  # the candidate's 64-bit seed; numpy takes seeds below 2**32
        plots=False,
        **hyp,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
