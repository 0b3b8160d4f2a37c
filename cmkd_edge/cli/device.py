"""``cmkd-edge device``: what this machine is, as the device rules see it.

Run on the board itself; ``--json FILE`` writes the description ``quantize --for FILE`` reads on
the workstation, so a bundle is quantized for the board's CPU, not the workstation's.
"""

from __future__ import annotations

import json

import click


@click.command("device")
@click.option("--json", "json_out", default=None, metavar="FILE",
              help="Write the description as JSON to FILE ('-': standard output).")
def device(json_out: str | None) -> None:
    """Describe this device: CPU model, ISA features, cores, memory, libraries, backends, profile.

    \b
    Example (on the board, then on the workstation):
      cmkd-edge device --json pi5.json
      cmkd-edge quantize bundles/s --for pi5.json
    """
    from cmkd_edge.runtime.device_profiles import DEVICES, describe_host, int8_format, resolve

    d = describe_host()
    if json_out == "-":
        click.echo(json.dumps(d, indent=2))
        return
    if json_out:
        from cmkd_edge.fsutil import atomic_write_json

        atomic_write_json(json_out, d)
    cpu = d["cpu"]
    fmt = int8_format(resolve("host"))
    rows = [("cpu", cpu["model"]), ("architecture", cpu["machine"]),
            ("features", ", ".join(cpu["flags_present"]) or "none that the device rules read"),
            ("logical cores", str(cpu["logical_cores"])),
            ("memory", f"{d['memory_mb']} MiB" if d["memory_mb"] else "unknown"),
            ("gpu", d["gpu"] or "none"),
            ("profile", (d["profile"] + f" ({DEVICES.help(d['profile'])})") if d["profile"] else "no rule set"),
            ("int8 format", f"{fmt['name']}: {fmt['reason']}"),
            ("backends", ", ".join(d["backends"]) or "none"),
            ("libraries", ", ".join(f"{k} {v}" for k, v in d["libraries"].items()))]
    for k, v in rows:
        click.echo(f"{k:14s} {v}")
    if json_out:
        click.echo(f"wrote {json_out}")
