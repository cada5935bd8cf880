"""`mivis sweep GRID_FILE`: run a grid end to end (reusing finished runs; resumable)."""
from __future__ import annotations

from ._common import console_reporter, print_json, workspace


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of (architecture, defenses, attack, seed) end to end")
    p.add_argument("grid_file", help="a TOML or JSON grid file (see mivis/sweep/grid.py)")
    p.add_argument("--estimate", action="store_true", help="only print the plan and the time estimate")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="device for the estimate")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--ray", metavar="ADDRESS", help="run the steps as Ray tasks: 'local' starts Ray on this machine, "
                   "'auto' joins this machine's cluster, or a cluster address (needs requirements-ray.txt; the "
                   "workspace must be on storage every node sees at the same path)")
    p.add_argument("--ray-cpus", type=int, default=1, metavar="N", help="CPUs per step (and torch threads)")
    p.add_argument("--ray-gpus", type=float, default=None, metavar="G",
                   help="GPUs per step (default: 1 when the cluster has GPUs, else 0)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    from ..sweep import estimate, plan_sweep, run_sweep
    ws = workspace(args)
    plan = plan_sweep(args.grid_file, ws)
    est = estimate(plan, ws, args.device)
    kinds = ", ".join(f"{k} ~{v / 60:.1f} min" for k, v in est["by_kind"].items())
    print(f"sweep {plan.name}: {len(plan.trials)} trials, {est['steps']} steps ({est['reused']} reused, "
          f"{est['to_run']} to run); estimated {est['seconds'] / 60:.1f} min on this device"
          + (f" ({kinds})" if kinds else ""), file=sys.stderr)
    if args.estimate:
        return 0
    executor = None
    if args.ray:
        from ..sweep.ray_executor import RayExecutor
        executor = RayExecutor(args.ray, cpus_per_step=args.ray_cpus, gpus_per_step=args.ray_gpus)
    summary = run_sweep(plan, ws, console_reporter(), executor=executor)
    if args.json:
        print_json(summary)
    else:
        done = sum(t["complete"] for t in summary["trials"])
        print(f"sweep {plan.name}: {done}/{len(summary['trials'])} trials complete, {summary['ran']} steps run, "
              f"{summary['reused']} reused, {len(summary['failed'])} failed, {summary['seconds']:.0f} s; "
              f"summary in {ws.path / 'sweeps' / (plan.name + '.json')}")
        for k, why in summary["failed"].items():
            print(f"  failed {plan.steps[k].label}: {why}")
    return 0 if not summary["failed"] else 1
