"""``videodiff report``: one page (HTML and a markdown twin) on a demo run, computed from its files.

Everything in the report is measured here or read from the run's own records: the stage log
(``timings.jsonl``: commands and durations), the autoencoder checkpoint (PSNR / SSIM and caption fidelity of
its reconstructions of held-out clips), the samples (``samples.jsonl`` and their GIFs, scored against their
prompts; prompts absent from the training captions are marked held out) and the resolved configs.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from videodiff.commands import run_reporting_errors
from videodiff.commands.fidelity import describe
from videodiff.data.manifest import ManifestError, read_manifest
from videodiff.metrics.caption_fidelity import ATTRIBUTES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videodiff report", description="Write the report of a demo run.")
    parser.add_argument("--demo-dir", required=True, help="the run folder (`make demo`'s DEMO_DIR)")
    parser.add_argument("--out", default=None, help="report folder (default DEMO_DIR/report)")
    parser.add_argument("--eval-clips", type=int, default=20, help="held-out clips to reconstruct")
    # The clip sizes of the demo's latent cache (`videodiff encode --patch 1 4 4 --max-frames 9 --token-budget 256`),
    # so reconstructions are judged at the sizes the DiT trains on.
    parser.add_argument("--patch", type=int, nargs=3, default=[1, 4, 4], metavar=("PT", "PH", "PW"))
    parser.add_argument("--max-frames", type=int, default=9)
    parser.add_argument("--token-budget", type=int, default=256)
    parser.add_argument("--target-fps", type=float, default=8.0)
    return parser


@torch.no_grad()
def evaluate_autoencoder(args: argparse.Namespace, demo: Path, media: Path) -> dict:
    """PSNR, SSIM and caption fidelity of reconstructions of the held-out clips, plus a few side-by-side GIFs."""
    from videodiff.data import ClipSampling, VideoDataModule
    from videodiff.data.decoding import write_gif
    from videodiff.data.transforms import to_frames
    from videodiff.metrics.caption_fidelity import caption_fidelity
    from videodiff.models.autoencoder.module import AutoencoderModule, reconstruction_quality

    module = AutoencoderModule.from_checkpoint(demo / "autoencoder.ckpt")
    grid = replace(module.latent_grid, patch_size=tuple(args.patch))
    sampling = ClipSampling(target_fps=args.target_fps, max_frames=args.max_frames, token_budget=args.token_budget)
    data = VideoDataModule(manifest=str(demo / "data/manifest.clean.jsonl"), grid=grid, sampling=sampling)
    data.setup("fit")
    dataset = data.dataset(data.val_entries)
    quality, originals, reconstructions = [], [], []
    for i in range(min(args.eval_clips, len(dataset))):
        sample = dataset[i]
        if not hasattr(sample, "video"):
            continue
        recon = module.autoencoder(sample.video[None], sample=False)[0].clamp(-1, 1)
        quality.append({k: float(v) for k, v in reconstruction_quality(sample.video[None], recon).items()})
        originals.append((to_frames(sample.video), sample.caption))
        reconstructions.append((to_frames(recon[0]), sample.caption))
        if i < 4:
            side_by_side = np.concatenate([originals[-1][0], reconstructions[-1][0]], axis=2)
            write_gif(media / f"reconstruction-{i}.gif", side_by_side, fps=8)
    return {
        "clips": len(quality),
        "psnr": float(np.mean([q["psnr"] for q in quality])),
        "ssim": float(np.mean([q["ssim"] for q in quality])),
        "fidelity_original": caption_fidelity(originals),
        "fidelity_reconstruction": caption_fidelity(reconstructions),
        "latent_scale": float(module.latent_scale),
        "gifs": [f"reconstruction-{i}.gif" for i in range(min(4, len(quality)))],
    }


def evaluate_samples(demo: Path, folder: Path, media: Path) -> dict:
    from videodiff.data.decoding import read_frames_pyav
    from videodiff.metrics.caption_fidelity import caption_fidelity, score_video

    records = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines() if line.strip()]
    training = {e.caption for e in read_manifest(demo / "data/manifest.clean.jsonl")}
    rows, pairs = [], []
    for record in records:
        frames = read_frames_pyav(folder / record["file"])
        verdicts = score_video(frames, record["prompt"])
        pairs.append((frames, record["prompt"]))
        gif = f"{folder.name}-{record['gif']}"
        shutil.copy(folder / record["gif"], media / gif)
        scored = {k: f"{sum(v)}/{len(v)}" if v else "-" for k, v in verdicts.items()}
        rows.append({**record, "gif": gif, "held_out": record["prompt"] not in training, "scores": scored})
    return {"rows": rows, "fidelity": caption_fidelity(pairs)}


TRAINING_PANELS = {
    "autoencoder": {
        "loss": ["train/loss", "val/loss"],
        "PSNR (dB, held-out clips)": ["val/psnr"],
        "SSIM (held-out clips)": ["val/ssim"],
    },
    "dit": {  # one curve per backbone in each
        "train loss (running mean of 10 records)": "train/loss",
        "validation loss": "val/loss",
    },
}


def read_timings(path: Path) -> list[dict]:
    """The stage records, a stage that ran again (``FORCE=1``, or its output removed) by its latest run only,
    in the order the latest runs happened: the table and its total describe what produced the outputs."""
    if not path.exists():
        return []
    latest = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        latest.pop(record["stage"], None)
        latest[record["stage"]] = record
    return list(latest.values())


def training_summary(demo: Path, timings: list[dict], media: Path) -> dict:
    """Loss and metric plots (PNG) of the autoencoder and of every DiT run, and a throughput row per run.

    DiT runs share one figure (one curve per backbone), so joint and factorised attention compare directly.
    """
    from videodiff.reporting.curves import latest_metrics_file, median, plot_panels, read_metrics, select, smooth

    seconds = {t["stage"]: t["seconds"] for t in timings}
    runs = {}
    for run_dir in [demo / "autoencoder", *sorted(demo.glob("dit-*/"))]:
        metrics = latest_metrics_file(run_dir) if run_dir.is_dir() else None
        if metrics is not None:
            runs[run_dir.name] = read_metrics(metrics)
    rows, plots = [], []
    for name, series in runs.items():
        steps = max((s for s, _ in series.get("train/loss", [])), default=-1) + 1
        unit = "pixels" if name == "autoencoder" else "tokens"
        rate = median(series, f"train/{unit}_per_s")
        final = series.get("val/loss", [])
        rows.append(
            {
                "run": name,
                "steps": steps,
                "seconds": seconds.get(name),
                "throughput": f"{rate:,.0f} {unit}/s" if rate else "-",
                "val_loss": final[-1][1] if final else None,
            }
        )
    if "autoencoder" in runs:
        panels = {p: select(runs["autoencoder"], keys) for p, keys in TRAINING_PANELS["autoencoder"].items()}
        plots.append(
            plot_panels({p: c for p, c in panels.items() if c}, media / "curves-autoencoder.png", "autoencoder").name
        )
    dits = {name.removeprefix("dit-"): series for name, series in runs.items() if name.startswith("dit-")}
    if dits:
        panels = {}
        for panel, key in TRAINING_PANELS["dit"].items():
            curves = {backbone: series[key] for backbone, series in dits.items() if series.get(key)}
            if key == "train/loss":
                curves = {backbone: smooth(points) for backbone, points in curves.items()}
            if curves:
                panels[panel] = curves
        for backbone, series in dits.items():  # what the SampleVideos callback scored during training
            fidelity = select(series, [f"samples/fidelity_{a}" for a in ATTRIBUTES])
            if fidelity:
                panels[f"sample caption fidelity: {backbone}"] = fidelity
        plots.append(plot_panels(panels, media / "curves-dit.png", "DiT, one curve per backbone").name)
    return {"runs": rows, "plots": plots}


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _fidelity_row(name: str, scores: dict[str, float]) -> list[str]:
    return [name, *(f"{scores[a]:.2f}" if scores[a] == scores[a] else "-" for a in ATTRIBUTES)]


def _probe_section(probes: dict[str, dict]) -> list[str]:
    """The ``videodiff fidelity`` figures per backbone, beside the first stage's and a uniform guess's."""
    first = next(iter(probes.values()))

    def cells(figures: dict) -> list[str]:  # the uniform guess has its own row, so not in each cell
        return [describe(figures[a], chance=False) for a in ATTRIBUTES]

    rows = [[f"samples: {name}", *cells(p)] for name, p in probes.items()]
    rows.append(["autoencoder reconstructions of the same scenes", *cells(first["first_stage"])])
    rows.append(["a uniform guess", *(f"{first[a]['chance']:.2f}" if first[a]["chance"] else "-" for a in ATTRIBUTES)])
    return [
        f"On {first['prompts']} one-object prompts at {first['size']} (`videodiff fidelity`, seed {first['seed']}, "
        f"{first['steps']} steps, guidance {first['guidance']}): accuracy (correct/scored, 95% interval). Shape and "
        "motion are judged only where the colour was found.",
        "",
        _table(["videos", *ATTRIBUTES], rows),
        "",
        *_confusion_section(probes),
        "On the demo's prompts above (too few to tell a network that follows shapes or motions from one at chance):",
        "",
    ]


def _confusion_section(probes: dict[str, dict]) -> list[str]:
    """Per backbone, what each captioned shape and motion was read as: where the figures above come from."""
    parts = []
    for name, probe in probes.items():
        for attribute in ("shape", "motion"):
            rows = probe.get("confusion", {}).get(attribute)
            if not rows:  # figures written before the confusion counts were, or nothing scored
                continue
            # Columns in the rows' order, so correct reads lie on the diagonal; then values never stated ("none").
            extra = sorted({read for counts in rows.values() for read in counts} - set(rows))
            reads = [*rows, *extra]
            table = [[stated, *(str(counts.get(r, 0)) for r in reads)] for stated, counts in rows.items()]
            parts += [
                f"{name}: each captioned {attribute} (row), read from the samples as (column):",
                "",
                _table([f"{attribute} stated", *reads], table),
                "",
            ]
    return parts


def render_markdown(
    demo: Path,
    timings: list[dict],
    ae: dict,
    samples: dict[str, dict],
    configs: dict[str, str],
    training: dict | None = None,
    probes: dict[str, dict] | None = None,
) -> str:
    parts = [f"# videodiff demo report: `{demo}`", "", "## Stages", ""]
    total = sum(t["seconds"] for t in timings)
    stage_rows = [[t["stage"], f"{t['seconds']:.0f}", f"`{t['command']}`"] for t in timings]
    parts += [_table(["stage", "seconds", "command"], stage_rows), "", f"Total: {total / 60:.1f} min."]
    if training and training["runs"]:
        parts += [
            "",
            "## Training",
            "",
            "Throughput is the median over logged steps (forward, backward, optimizer).",
            "",
        ]
        run_rows = [
            [
                r["run"],
                str(r["steps"]),
                f"{r['seconds']:.0f}" if r["seconds"] else "-",
                r["throughput"],
                f"{r['val_loss']:.4f}" if r["val_loss"] is not None else "-",
            ]
            for r in training["runs"]
        ]
        parts.append(_table(["run", "steps", "seconds", "throughput", "last validation loss"], run_rows))
        parts += ["", " ".join(f"![]({p})" for p in training["plots"])]
    if len(samples) > 1:
        parts += _side_by_side(samples)
    header = ["video", "prompt", "size (FxHxW)", "held out", *ATTRIBUTES]
    for name, result in samples.items():
        parts += ["", f"## Samples: {name}", ""]
        rows = [
            [f"![]({r['gif']})", r["prompt"], r["size"], "yes" if r["held_out"] else "no"]
            + [r["scores"][a] for a in ATTRIBUTES]
            for r in result["rows"]
        ]
        parts.append(_table(header, rows))
    parts += [
        "",
        "## Caption fidelity",
        "",
        "Accuracy per attribute of what the videos show against their captions.",
        "",
    ]
    if probes:
        parts += _probe_section(probes)
    fidelity_rows = [_fidelity_row(f"samples: {name}", result["fidelity"]) for name, result in samples.items()]
    fidelity_rows += [
        _fidelity_row("autoencoder reconstructions", ae["fidelity_reconstruction"]),
        _fidelity_row("ground-truth clips at training size", ae["fidelity_original"]),
    ]
    parts.append(_table(["videos", *ATTRIBUTES], fidelity_rows))
    parts += [
        "",
        "## Autoencoder",
        "",
        f"Reconstructions of {ae['clips']} held-out clips: PSNR {ae['psnr']:.2f} dB, SSIM {ae['ssim']:.3f} "
        f"(latent scale {ae['latent_scale']:.3f}). Input | reconstruction:",
        "",
        " ".join(f"![]({g})" for g in ae["gifs"]),
        "",
        "## Configs",
    ]
    for name, text in configs.items():
        parts += ["", f"### {name}", "", "```yaml", text.strip(), "```"]
    return "\n".join(parts) + "\n"


def _side_by_side(samples: dict[str, dict]) -> list[str]:
    """The same prompts and seeds under each backbone, in adjacent columns."""
    names = list(samples)
    by_prompt: dict[tuple[str, str], dict[str, str]] = {}
    for name in names:
        for r in samples[name]["rows"]:
            by_prompt.setdefault((r["prompt"], r["size"]), {})[name] = f"![]({r['gif']})"
    rows = [[prompt, size, *(cells.get(n, "-") for n in names)] for (prompt, size), cells in by_prompt.items()]
    rows.append(
        [
            "caption fidelity (background / color / shape / motion)",
            "",
            *(" / ".join(f"{samples[n]['fidelity'][a]:.2f}" for a in ATTRIBUTES) for n in names),
        ]
    )
    return ["", f"## Backbones side by side: {' vs '.join(names)}", "", _table(["prompt", "size", *names], rows)]


def render_html(markdown: str) -> str:
    """A minimal HTML rendering of the report's markdown (tables, images, headings, code), no dependency."""
    out, in_code, in_table = [], False, False
    for line in markdown.splitlines():
        if line.startswith("```"):
            out.append("<pre>" if not in_code else "</pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            tag = "th" if not in_table else "td"
            out.append(
                ("<table>" if not in_table else "")
                + "<tr>"
                + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells)
                + "</tr>"
            )
            in_table = True
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    if in_table:
        out.append("</table>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}td,th{border:1px solid #ccc;padding:4px}"
        "img{image-rendering:pixelated;height:96px}"
    )
    head = f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head>"
    return f"{head}<body>{''.join(out)}</body></html>\n"


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"!\[\]\(([^)]+)\)", r"<img src='\1'>", text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def report(args: argparse.Namespace, console: Console) -> int:
    demo = Path(args.demo_dir)
    # The default backbone (joint) first, the others after it, so side-by-side columns read baseline -> variant.
    sample_dirs = sorted(
        (p.parent for p in demo.glob("samples*/samples.jsonl")), key=lambda d: (d.name != "samples-joint", d.name)
    )
    for required in ("autoencoder.ckpt", "data/manifest.clean.jsonl"):
        if not (demo / required).exists():
            raise FileNotFoundError(f"{demo / required} is missing: run `make demo DEMO_DIR={demo}` first")
    if not sample_dirs:
        raise FileNotFoundError(f"{demo}: no samples*/samples.jsonl; run `make demo DEMO_DIR={demo}` first")
    out = Path(args.out or demo / "report")
    out.mkdir(parents=True, exist_ok=True)
    timings_file = demo / "timings.jsonl"
    timings = read_timings(timings_file)
    ae = evaluate_autoencoder(args, demo, out)
    training = training_summary(demo, timings, out)
    samples = {d.name.removeprefix("samples-"): evaluate_samples(demo, d, out) for d in sample_dirs}
    probes = {
        name: json.loads((demo / f"fidelity-{name}.json").read_text())
        for name in samples
        if (demo / f"fidelity-{name}.json").is_file()
    }
    configs = {str(p.relative_to(demo)): p.read_text() for p in sorted(demo.glob("*/config.yaml"))}
    # Runs reproduce from these: the exact commands are in the stage table, the resolved configs below.
    markdown = render_markdown(demo, timings, ae, samples, configs, training, probes)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(render_html(markdown))
    (out / "report.json").write_text(
        json.dumps(
            {"timings": timings, "training": training, "autoencoder": ae, "samples": samples, "fidelity": probes},
            indent=1,
        )
    )
    console.print(f"report: {out / 'report.html'} (and report.md)", highlight=False)
    for name, result in samples.items():
        fidelity = ", ".join(f"{k} {v:.2f}" for k, v in result["fidelity"].items())
        console.print(f"  caption fidelity of the {name} samples: {fidelity}", highlight=False)
    for name, probe in probes.items():
        figures = ", ".join(describe(probe[a], a) for a in ATTRIBUTES)
        console.print(f"  on {probe['prompts']} prompts ({name}): {figures}", highlight=False)
    return 0


def main(argv: list[str]) -> int:
    return run_reporting_errors(report, build_parser().parse_args(argv), (ManifestError, ValueError, OSError), code=2)
