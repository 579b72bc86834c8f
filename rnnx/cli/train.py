"""`rnnx train`: every knob of the Trainer on a built-in task, its summary, its story
(--explain) and its checkpoint, which --resume continues with the settings saved in it."""
from __future__ import annotations

import json
from pathlib import Path

from .._checks import FLOAT_DTYPES
from ..model.init import RECURRENT_INITS
from ..optim.named import CLIPS, make_clip, make_optimizer
from ..optim.optimizers import OPTIMIZERS
from ..tasks import make as make_task
from ..training import POLICIES, SPIKE_POLICIES
from .args import EXIT_OK, UsageError, formatter, jsonable, nonnegative_int, positive
from .args import task_names
from .resume import (MAY_CHANGE, SavedSettings, record_given_flags, resume_settings,
                     settings_of)
from .sizes import check_memory, new_model, task_sizes

__all__ = ["add_train", "run_train"]


def _spike_choices():
    """The Trainer's spike policies, with "off" for None (detection off)."""
    return tuple("off" if p is None else p for p in SPIKE_POLICIES)


def _threshold_defaults():
    """'1; 2.5 for zclip': the usual --clip-threshold default, then the exceptions."""
    values = [d for _, d in CLIPS.values() if d is not None]
    usual = max(set(values), key=values.count)
    others = [f"{d:g} for {k}" for k, (_, d) in CLIPS.items() if d not in (None, usual)]
    return "; ".join([f"{usual:g}"] + others)


def add_train(sub):
    p = sub.add_parser(
        "train", formatter_class=formatter, help="train an RNN on a built-in task",
        description="Train a vanilla tanh RNN on a built-in task with every knob of "
                    "rnnx.Trainer. --steps is the total: with --resume the run continues "
                    "from the checkpoint up to that many steps.",
        epilog="examples:\n"
               "  rnnx train --task adding --length 100 --clip global_norm --clip-threshold 1\n"
               "  rnnx train --spectral-radius 1.5 --lr 0.3 --policy skip --log run.csv --json\n"
               "  rnnx train --steps 2000 --checkpoint run.npz --checkpoint-every 100\n"
               "  rnnx train --steps 4000 --checkpoint run.npz --resume   # continue it")
    record_given_flags(p)       # so that --resume tells a given flag from a default
    g = p.add_argument_group("task and model")
    g.add_argument("--task", choices=task_names(), default="adding", help="built-in task")
    g.add_argument("--length", "-T", type=positive(int), default=50, help="sequence length T")
    g.add_argument("--hidden", type=positive(int), default=32, help="hidden size H")
    g.add_argument("--init", choices=RECURRENT_INITS, default="orthogonal",
                   help="initialisation of W_hh")
    g.add_argument("--spectral-radius", type=positive(float), default=None,
                   help="rescale W_hh to this spectral radius (default: the init's own)")
    g.add_argument("--std", type=positive(float), default=None,
                   help="std of the gaussian / smart_tanh inits (default: the init's own)")
    g.add_argument("--dtype", choices=FLOAT_DTYPES, default="float32",
                   help="dtype of the weights and the computation")
    g = p.add_argument_group("optimisation")
    g.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="sgd", help="optimizer")
    g.add_argument("--lr", type=positive(float), default=0.01, help="learning rate")
    g.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    g.add_argument("--clip", choices=tuple(CLIPS), default="none",
                   help="gradient clipping transformation (pascanu: global norm, and a "
                        "gradient above 1e10 replaced by 0.02 W_hh, as Pascanu et al.'s code)")
    g.add_argument("--clip-threshold", type=positive(float), default=None,
                   help="max norm / limit / AGC ratio / AutoClip percentile / ZClip z-score "
                        f"(default: {_threshold_defaults()})")
    g.add_argument("--clip-delta", type=positive(float), default=None,
                   help="element-wise clip of dL/dh[t] inside BPTT (default: none)")
    g.add_argument("--max-norm", type=positive(float), default=None,
                   help="fail a step whose ||dL/dh[t]|| passes this (default: none)")
    g.add_argument("--omega", type=float, default=0.0,
                   help="weight of Pascanu et al.'s regulariser")
    g.add_argument("--policy", choices=POLICIES, default="skip",
                   help="what a non-finite step does (pascanu: step with 0.02 W_hh instead, "
                        "as Pascanu et al.'s code; with --clip pascanu, the code's SGD-C)")
    g.add_argument("--spikes", choices=_spike_choices(), default="log",
                   help="what a gradient-norm spike does")
    g.add_argument("--steps", type=positive(int), default=500,
                   help="training steps in all (with --resume: up to this many)")
    g.add_argument("--batch-size", type=positive(int), default=32,
                   help="sequences per training step")
    g.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of the initialisation and the batches")
    g = p.add_argument_group("output")
    g.add_argument("--log", metavar="PATH", help="log file, .csv or .jsonl (default: none)")
    g.add_argument("--checkpoint", metavar="PATH", help="checkpoint file, .npz (default: none)")
    g.add_argument("--checkpoint-every", type=positive(int), default=None,
                   help="save a checkpoint every N steps (default: at the end only)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run saved in --checkpoint, with its settings (flags "
                        "given override only " + ", ".join("--" + k.replace("_", "-") for k
                                                           in MAY_CHANGE) + ")")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing --checkpoint with a new run")
    g.add_argument("--quiet", action="store_true", help="no progress bar or table")
    g.add_argument("--json", action="store_true", help="print the summary as JSON")
    g.add_argument("--explain", action="store_true",
                   help="also tell the run's story in words: calm band, first spike, first "
                        "overflow and its time step, growth of the backward signal per time "
                        "step, what the policy and clipping did")
    p.set_defaults(run=run_train)


def _clip(args):
    return make_clip(args.clip, args.clip_threshold)


def _optimizer(args):
    if args.momentum and args.optimizer != "sgd":
        raise UsageError("--momentum applies to --optimizer sgd only")
    return make_optimizer(args.optimizer, args.lr, args.momentum)


def run_train(args):
    from ..training.quiet import quiet_training
    from .report import format_table, summarize
    from .story import logged_sigma_max, narrate, read_story, wrap
    from ..training.loop import Trainer
    from ..training.checkpoint import CheckpointError
    given = getattr(args, "given_flags", set())
    if args.resume and not args.checkpoint:
        raise UsageError("--resume needs --checkpoint PATH")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    new_policy = False
    if args.resume:
        if not Path(args.checkpoint).exists():
            raise FileNotFoundError(f"no checkpoint to resume at {args.checkpoint!r}")
        new_policy = resume_settings(args, given)
    elif args.checkpoint and Path(args.checkpoint).exists() and not args.overwrite:
        raise UsageError(f"checkpoint {args.checkpoint!r} exists: pass --resume to continue "
                         "that run, or --overwrite to replace it with a new one")
    if args.checkpoint_every and not args.checkpoint:
        raise UsageError("--checkpoint-every needs --checkpoint PATH")
    settings = settings_of(args)
    check_memory(args.length, args.batch_size, args.hidden, *task_sizes(args.task),
                  args.dtype, training=True)
    task = make_task(args.task, args.length, dtype=args.dtype)
    model = new_model(args, task.input_size, task.output_size, readout=task.readout,
                       std=args.std)
    trainer = Trainer(model, _optimizer(args), loss=task.loss, clip=_clip(args),
                      policy=args.policy, max_norm=args.max_norm, clip_delta=args.clip_delta,
                      omega=args.omega, spikes=None if args.spikes == "off" else args.spikes,
                      log_path=args.log, checkpoint_path=args.checkpoint,
                      checkpoint_every=args.checkpoint_every,
                      callbacks=[SavedSettings(settings)],
                      progress=not (args.quiet or args.json), seed=args.seed)
    if args.resume:
        try:
            trainer.load_checkpoint(args.checkpoint, new_policy=new_policy)
        except CheckpointError as e:
            raise OSError(str(e)) from None
    remaining = args.steps - trainer.step
    if remaining > 0:
        with quiet_training():
            trainer.fit(task, steps=remaining, batch_size=args.batch_size)
        if args.checkpoint:
            trainer.save_checkpoint()
    summary = summarize("train", trainer, task, seed=args.seed + 2)
    summary["resumed_from_step"] = args.steps - remaining if args.resume else None
    if args.explain:
        story = read_story(trainer.history)
        at, smax = logged_sigma_max(trainer.history, story.spike_step)
        summary["story"] = story.to_dict()
        summary["explanation"] = narrate(story, name="this run", sigma_max=smax,
                                         sigma_max_step=at, accuracy=summary["accuracy"],
                                         eval_sequences=summary["eval_sequences"],
                                         solved=summary["solved"], policy=trainer.policy)
    if args.json:
        summary["forensics"] = _forensics(trainer.history)
        print(json.dumps(jsonable(summary)))
    elif not args.quiet:
        print(format_table([summary]))
        print(_forensics_line(_forensics(trainer.history)))
    if args.explain and not args.json:
        print("\n" + wrap(summary["explanation"]))
    return EXIT_OK


def _forensics(history):
    from ..training.forensics import forensics_summary
    return forensics_summary(history)


def _forensics_line(counts):
    """One line: the early warnings and the float64 verdicts on spikes and failures."""
    return (f"forensics: {counts['warnings']} early warning(s); float64 second opinion on "
            f"spikes/failures: {counts['real']} real, {counts['artefact']} float32 "
            f"artefact(s), {counts['disputed']} disputed")
