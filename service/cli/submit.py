"""`pprl submit`: a partner uploads its hashed extract over HTTPS."""

from __future__ import annotations

from pathlib import Path

import typer

from linkage.encode import read_manifest
from service.cli._app import JsonOption, api_client, app, emit, errors_as_messages, out, progress


@app.command()
def submit(
    file: Path = typer.Argument(..., help="The hashed Parquet file from `pprl hash`."),
    project: str = typer.Option(..., "--project", help="Project name or id."),
    as_json: bool = JsonOption,
) -> None:
    """Upload a hashed extract to a project (partner token); prints the receipt.

    Streams the file with a progress bar, verifies the server certificate against
    PPRL_CA_BUNDLE, and retries connection failures.
    """
    with errors_as_messages():
        manifest = read_manifest(file)  # refuse a plaintext or foreign file before sending it
    size = file.stat().st_size
    with api_client() as client, progress("bytes") as bar:
        task = bar.add_task(f"uploading {file.name}", total=size)
        receipt = client.upload(
            f"/v1/projects/{project}/submissions",
            file,
            on_progress=lambda sent: bar.update(task, completed=sent),
        )
    emit(
        receipt,
        as_json,
        lambda: out.print(
            f"accepted: version {receipt['version']} of {receipt['partner']}, "
            f"{receipt['rows']:,} rows, sha256 {receipt['sha256'][:16]}..., "
            f"key check value {manifest.key_check_value}"
        ),
    )
