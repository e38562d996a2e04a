"""`kist-harness generate OUT.toml`: sample a network scenario from a relay population.

Seeded, so the same arguments write the same file; the file's header says how it was made.
Everything is checked (the arguments, the population, the sampled scenario through the
same validation ``net up`` uses) before anything is written, and a file the harness did not
generate is never overwritten.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from harness.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.experiments.sample import CONDITIONS, LINK_MODELS, SampleSpec

    d = SampleSpec(seed=1)
    p = sub.add_parser("generate", help="sample a network scenario (relays, clients, links) from a relay population")
    p.add_argument("out", help="scenario file to write (.toml)")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed samples the same relays "
                                                       "under every condition (default 1)")
    p.add_argument("--consensus", type=Path, help="sample from this v3 consensus file (parsed with stem) "
                                                  "instead of the bundled Tor Metrics 2017-01 summary")
    p.add_argument("--network-scale", type=float, default=d.network_scale,
                   help=f"fraction of the population's relays and of the paper's 49,800 clients "
                        f"(default {d.network_scale:g})")
    p.add_argument("--load-scale", type=float, default=d.load_scale, help="multiplies the clients only")
    p.add_argument("--condition", choices=sorted(CONDITIONS), default="base",
                   help="the paper's condition: low/high load scale the clients, no/high loss the links' loss")
    p.add_argument("--links", choices=sorted(LINK_MODELS), default=d.links,
                   help="link model: none, or paper (latency per node, loss = latency/300 ms x 1.5 %%)")
    p.add_argument("--capacity-kib", type=float, default=d.capacity_kib,
                   help=f"sum of the relays' BandwidthRate after scaling, KiB/s (default {d.capacity_kib:g})")
    p.add_argument("--loops-per-process", type=int, default=d.loops_per_process,
                   help=f"virtual clients per tor client process (default {d.loops_per_process})")
    p.add_argument("--under-test", type=int, default=d.under_test,
                   help=f"fastest middles that run the patched tor (default {d.under_test})")
    p.add_argument("--under-test-binary", choices=("patched", "stock"), default=d.under_test_binary)
    p.add_argument("--duration", type=float, default=d.duration_s, help="traffic seconds")
    p.add_argument("--pause-scale", type=float, default=d.pause_scale, help="multiplies every think time")
    p.add_argument("--servers", type=int, default=d.servers, help="file servers")
    p.set_defaults(func=_generate)


def _generate(args: argparse.Namespace) -> int:
    from harness.experiments import population, sample

    out = Path(args.out)
    if out.suffix != ".toml":
        raise InputError(f"{out}: give a .toml file name for the scenario")
    if out.exists() and not out.read_text(errors="replace").startswith(sample.GENERATED_MARK):
        raise InputError(f"{out} exists and was not written by `kist-harness generate`: not overwriting it; "
                         "give another name or remove it yourself")
    if not out.parent.is_dir():
        raise InputError(f"{out}: directory {out.parent} does not exist")
    pop = population.from_consensus(args.consensus) if args.consensus else population.BUNDLED
    spec = sample.SampleSpec(seed=args.seed, network_scale=args.network_scale, load_scale=args.load_scale,
                             condition=args.condition, capacity_kib=args.capacity_kib,
                             loops_per_process=args.loops_per_process, under_test=args.under_test,
                             under_test_binary=args.under_test_binary, duration_s=args.duration,
                             pause_scale=args.pause_scale, servers=args.servers, links=args.links)
    data = sample.sample(pop, spec)
    text = sample.header(pop, spec) + sample.to_toml(data)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    relays = data["relays"]
    by_role = {r: sum(1 for g in relays if g["role"] == r) for r in ("guard", "middle", "exit")}
    virtual = sum(c["loops"] for c in data["clients"])
    print(f"{out}: {len(relays)} relays ({by_role['guard']} guard, {by_role['middle']} middle, "
          f"{by_role['exit']} exit; {sum(g['bandwidth_rate_kib'] for g in relays)} KiB/s in all) + 3 authorities, "
          f"{len(data['clients'])} client processes carrying {virtual} virtual clients, "
          f"{spec.servers} file servers; population {pop.name}, seed {spec.seed}, condition {spec.condition}")
    return 0
