"""`scones report` writes the three plots and a self-contained HTML page that shows the recent inferences."""

from __future__ import annotations

import uuid
from pathlib import Path

from PIL import Image

from monitoring.report import write_report
from service.local_stack import LocalStack
from service.outcome_watch import wait_for_outcomes
from service.sample_uploads import INVALID
from training.staging import StagedDataset


def test_report_shows_the_latest_outcomes(stack: LocalStack, staged: StagedDataset, tmp_path: Path) -> None:
    folder = f"inbox/report-{uuid.uuid4().hex[:8]}"
    uploads = {
        f"{folder}/{label}-{path.name}": path.read_bytes()
        for label in ("bicycle", "motorcycle")
        for path in sorted((staged.split_dir("test") / label).iterdir())[:5]
    }
    uploads[f"{folder}/page.jpg"] = INVALID["page.jpg"][0]()
    uploads[f"{folder}/bomb.png"] = INVALID["bomb.png"][0]()  # anyone's upload: the report must survive it
    s3 = stack.client("s3")
    for key, data in uploads.items():
        s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=data)
    wait_for_outcomes(s3, stack.resources.bucket, uploads, timeout_s=60, poll_s=0.1)
    summary = write_report(s3, stack.resources.bucket, tmp_path, last=len(uploads))
    assert summary["inferences"] == len(uploads)
    assert sum(summary["outcomes"].values()) == len(uploads) and summary["outcomes"].get("failed") == 2
    for name in ("recent_inference_confidence.png", "inference_result.png", "outcomes_over_time.png"):
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.width > 500 and image.height > 250
    page = (tmp_path / "index.html").read_text()
    assert all(key in page for key in uploads), "every recent inference has a row"
    assert page.count("data:image/png;base64,") == 3 + 10, "three plots and a thumbnail per decodable image"
    assert "not_an_image" in page and "decompression_bomb" in page and 'src="http' not in page
