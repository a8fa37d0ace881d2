"""``segunify export-dataset CONFIG.yaml --out DIR [--copy|--link] [--format plain|parquet]``: the compound
training set of a train config, for any trainer (:mod:`segunify.apps.export`)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("export-dataset")
    def export_dataset_cmd(
        config: Path = typer.Argument(..., help="training config (YAML) whose parts are exported"),
        out: Path = typer.Option(..., "--out", help="output folder (a rerun skips finished parts)"),
        copy: bool = typer.Option(
            None, "--copy/--link", help="plain format: copy the images or link them (default: link)"
        ),
        layout: str = typer.Option(
            "plain", "--format", help="plain (images/, labels/, splits/) or parquet (Hugging Face shards)"
        ),
        overrides: list[str] = typer.Option(None, "--set", help="override a config key, as for train"),
    ) -> int:
        """Each part's images and labels in the target taxonomy's train ids (255 ignore), taxonomy.csv and a
        dataset card (README.md + dataset_info.json: sources, mappings, teachers, label shares, terms)."""
        from segunify.apps.export import export_dataset
        from segunify.cli import console, err_console
        from segunify.cli._util import flag_errors, progress_bar

        bar = progress_bar(console=err_console, transient=True)

        def progress(name: str, total: int):
            bar.start()  # only once a part is written: a refused config prints its one line alone
            task = bar.add_task(f"export {name}", total=total, rate="")
            return lambda n: bar.advance(task, n)

        try:
            with flag_errors(copy="--link"):
                result = export_dataset(config, out, layout, copy, overrides or [], progress=progress)
        finally:
            if bar.live.is_started:
                bar.stop()
        for warning in result.warnings:
            err_console.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
        info = result.info
        for part in info["parts"]:
            state = "skipped (finished earlier)" if part["name"] in result.skipped else "written"
            console.print(
                f"{part['name']}: {part['frames']} frames of {part['dataset']} {part['split']} "
                f"({part['labels']}, ignored {100 * part['ignored_share']:.1f} %): {state}",
                markup=False,
                highlight=False,
            )
        for name in result.removed:
            console.print(f"{name}: removed (not a part of this config)", markup=False, highlight=False)
        console.print(
            f"{info['frames']} frames, {info['layout']} ({info['images']} images) -> {out} "
            f"(card: {out / 'README.md'})",
            markup=False,
            highlight=False,
        )
        return 0
