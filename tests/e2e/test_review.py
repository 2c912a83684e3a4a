"""`scones review` on a queue of known items: labels stored, images copied, queue emptied; skipped items
come back; two reviewers never both store one item; `scones labels export` writes `<class>/<image>`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from monitoring.review import Reviewer, labeled_key
from monitoring.review_web import WebReview
from scones.objects import ObjectRef, label_key
from service.local_stack import LocalStack
from service.outcome_watch import wait_for_outcomes
from tests.e2e.settle import quiet
from training.staging import StagedDataset

ROOT = Path(__file__).parents[2]


def queue_for_review(stack: LocalStack, staged: StagedDataset, per_class: int) -> dict[str, str]:
    """Upload known images with the threshold at 1.0, so each goes to review; key → true class."""
    quiet(stack)  # no earlier run sends a message after the drain
    sqs = stack.client("sqs")
    url = stack.resources.review_queue_url
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:  # what earlier tests left (PurgeQueue allows one call a minute)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    lam = stack.client("lambda")
    variables = lam.get_function_configuration(FunctionName="scones-filter")["Environment"]["Variables"]
    lam.update_function_configuration(
        FunctionName="scones-filter", Environment={"Variables": variables | {"CONFIDENCE_THRESHOLD": "1.0"}}
    )
    folder = f"inbox/review-{uuid.uuid4().hex[:8]}"
    truth = {}
    try:
        s3 = stack.client("s3")
        for label in ("bicycle", "motorcycle"):
            for path in sorted((staged.split_dir("test") / label).iterdir())[:per_class]:
                key = f"{folder}/{label[0]}-{path.name}"
                s3.put_object(Bucket=stack.resources.bucket, Key=key, Body=path.read_bytes())
                truth[key] = label
        index = wait_for_outcomes(s3, stack.resources.bucket, truth, timeout_s=60, poll_s=0.1)
        assert {record["outcome"] for record in index.records.values()} == {"review"}
        quiet(stack)  # every review message is sent
    finally:
        lam.update_function_configuration(FunctionName="scones-filter", Environment={"Variables": variables})
    return truth


class ReviewSession:
    """`scones review` in its own process, answered at its prompt like a person would."""

    def __init__(self, stack: LocalStack, thumbnails: Path, *arguments: str) -> None:
        environment = os.environ | {
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": stack.aws_endpoint_url,
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", "service.cli", "review", "--thumbnails", str(thumbnails), *arguments]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.output = ""

    def next_prompt(self) -> str | None:
        """What was printed up to the next prompt (None when the session ended)."""
        assert self.process.stdout is not None
        shown = ""
        while not shown.endswith("> "):
            char = self.process.stdout.read(1)
            if not char:
                self.output += shown
                return None
            shown += char
        self.output += shown
        return shown

    def answer(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def finish(self) -> str:
        self.output += self.process.communicate(timeout=60)[0]
        assert self.process.returncode == 0, self.output
        return self.output


def test_review_labels_every_item_and_empties_the_queue(
    stack: LocalStack, staged: StagedDataset, tmp_path: Path
) -> None:
    truth = queue_for_review(stack, staged, per_class=2)
    session = ReviewSession(stack, tmp_path / "thumbs")
    skipped = None
    while (shown := session.next_prompt()) is not None:
        key = next(k for k in truth if k in shown)
        assert "model says" in shown and "thumbnail: " in shown
        if skipped is None:
            skipped = key
            session.answer("s")
        else:
            session.answer(truth[key][0])  # b or m
    output = session.finish()
    assert skipped is not None and "labeled 3, skipped 1" in output
    assert len(list((tmp_path / "thumbs").glob("*.png"))) == 4
    assert not list((tmp_path / "thumbs").glob("*.png.png")), "one suffix: the uploads are PNGs"

    again = ReviewSession(stack, tmp_path / "thumbs")
    shown = again.next_prompt()
    assert shown is not None and skipped in shown, "the skipped item came back"
    again.answer(truth[skipped])
    assert again.next_prompt() is None
    assert "labeled 1" in again.finish()

    s3 = stack.client("s3")
    bucket = stack.resources.bucket
    for key, label in truth.items():
        head = s3.head_object(Bucket=bucket, Key=key)
        obj = ObjectRef(bucket, key, head["ETag"].strip('"'))
        stored = json.loads(s3.get_object(Bucket=bucket, Key=label_key(obj))["Body"].read())
        assert stored["label"] == label and stored["model_label"] in ("bicycle", "motorcycle")
        copied = s3.get_object(Bucket=bucket, Key=labeled_key(obj, label))["Body"].read()
        assert copied == s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.resources.review_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}

    exported = subprocess.run(
        [sys.executable, "-m", "service.cli", "labels", "export", str(tmp_path / "export")],
        cwd=ROOT,
        env=os.environ
        | {
            "AWS_ACCESS_KEY_ID": "l",
            "AWS_SECRET_ACCESS_KEY": "l",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": stack.aws_endpoint_url,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr
    for label in ("bicycle", "motorcycle"):
        assert len(list((tmp_path / "export" / label).iterdir())) >= 2


@pytest.mark.parametrize("visibility_s", [1])
def test_two_reviewers_never_both_store_one_item(
    stack: LocalStack, staged: StagedDataset, visibility_s: int
) -> None:
    truth = queue_for_review(stack, staged, per_class=1)
    s3, sqs, url = stack.client("s3"), stack.client("sqs"), stack.resources.review_queue_url
    slow = Reviewer(s3, sqs, url, reviewer="slow", visibility_s=visibility_s)
    quick = Reviewer(s3, sqs, url, reviewer="quick", visibility_s=60)
    try:
        first = next(slow.items())
        time.sleep(visibility_s + 0.5)  # the slow reviewer's hold on the message runs out
        same = None
        for item in quick.items():
            if item.obj.key == first.obj.key:
                same = item
                break
            quick.skip(item)  # another test's item: released below, not left hidden
        assert same is not None
        assert quick.store(same, truth[same.obj.key]) is True
        assert slow.store(first, "neither") is False, "the second store is refused"
    finally:  # items either of them received and did not store go back for the next test
        quick.release()
        slow.release()
    with pytest.raises(s3.exceptions.ClientError):  # and wrote no image under the refused label
        s3.head_object(Bucket=stack.resources.bucket, Key=labeled_key(first.obj, "neither"))
    head = s3.head_object(Bucket=stack.resources.bucket, Key=first.obj.key)
    stored = json.loads(
        s3.get_object(
            Bucket=stack.resources.bucket,
            Key=label_key(ObjectRef(stack.resources.bucket, first.obj.key, head["ETag"].strip('"'))),
        )["Body"].read()
    )
    assert stored["reviewer"] == "quick" and stored["label"] == truth[first.obj.key]


def test_the_review_page_labels_items_over_http(
    stack: LocalStack, staged: StagedDataset, review_page: tuple[str, WebReview]
) -> None:
    import re
    import urllib.parse
    import urllib.request

    truth = queue_for_review(stack, staged, per_class=1)
    base, _ = review_page
    labeled = []
    for _ in range(len(truth)):
        page = urllib.request.urlopen(base, timeout=10).read().decode()
        shown = re.search(r'<p id="key">([^<]+)</p>', page)
        assert shown, page
        assert 'id="image" src="data:image/png;base64,' in page and 'id="label-bicycle"' in page
        body = urllib.parse.urlencode({"label": truth[shown.group(1)], **hidden_fields(page)}).encode()
        answer = urllib.request.urlopen(urllib.request.Request(f"{base}label", data=body), timeout=10)
        assert answer.status == 200  # redirected to the next item
        labeled.append(shown.group(1))
    final = urllib.request.urlopen(base, timeout=10).read().decode()
    assert 'id="empty"' in final and f"{len(truth)} labeled" in final
    assert sorted(labeled) == sorted(truth)
    s3, bucket = stack.client("s3"), stack.resources.bucket
    for key, label in truth.items():
        obj = ObjectRef(bucket, key, s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"'))
        assert json.loads(s3.get_object(Bucket=bucket, Key=label_key(obj))["Body"].read())["label"] == label


def hidden_fields(page: str) -> dict[str, str]:
    """The page form's hidden inputs (the session token and the item shown)."""
    import html
    import re

    return {
        name: html.unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page)
    }


def test_the_review_page_takes_labels_only_from_its_own_form_for_the_item_it_shows(
    stack: LocalStack, staged: StagedDataset, review_page: tuple[str, WebReview]
) -> None:
    """Another site posting a label (no token), a rebound DNS name (another Host), and a click on a
    page that no longer shows the current item (a second tab, history) all label nothing."""
    import urllib.error
    import urllib.parse
    import urllib.request

    queue_for_review(stack, staged, per_class=1)
    base, session = review_page
    rebound = urllib.request.Request(base, headers={"Host": "attacker.example:8765"})
    with pytest.raises(urllib.error.HTTPError, match="403"):  # reading the page (its token) too
        urllib.request.urlopen(rebound, timeout=10)
    assert session.current is None, "a refused read takes no item off the queue"
    page = urllib.request.urlopen(base, timeout=10).read().decode()
    fields = hidden_fields(page)
    assert set(fields) == {"token", "item"}

    def post(form: dict[str, str], headers: dict[str, str] | None = None) -> int:
        request = urllib.request.Request(
            f"{base}label", data=urllib.parse.urlencode(form).encode(), headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    assert post({"label": "bicycle", "item": fields["item"]}) == 403  # a forged cross-site post
    assert post({"label": "bicycle", **fields}, {"Host": "attacker.example:8765"}) == 403
    assert post({"label": "bicycle", "token": fields["token"], "item": "another item"}) == 409
    assert session.labeled == 0 and session.current is not None, "nothing was labeled"
    assert post({"label": "skip", **fields}) == 200  # the page's own form
    assert post({"label": "bicycle", **fields}) == 409, "the same click again: that item is done"
    assert session.labeled == 0 and session.skipped == 1
    while (page := urllib.request.urlopen(base, timeout=10).read().decode()) and 'id="empty"' not in page:
        assert post({"label": "skip", **hidden_fields(page)}) == 200  # leave the queue as found


def test_skipped_items_stay_held_through_a_long_session_and_release_survives_stale_handles(
    stack: LocalStack,
) -> None:
    """Skipped items are hidden for the visibility timeout: a session longer than that hides them
    again as it goes, and ending it does not fail on a handle SQS no longer holds."""
    import time
    import uuid

    from monitoring.review import Reviewer

    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=f"review-held-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    for name in ("a", "b", "c"):
        record = {"bucket": stack.resources.bucket, "key": f"inbox/{name}.png", "etag": name}
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
    reviewer = Reviewer(stack.client("s3"), sqs, url, visibility_s=6)
    first = next(reviewer.items(limit=1))
    reviewer.skip(first)
    time.sleep(3.5)  # past half the timeout: the next request hides the skipped item again
    second = next(reviewer.items(limit=1))
    reviewer.skip(second)
    time.sleep(3.0)  # the first item's original 6 s are over; it must still be hidden
    third = next(reviewer.items(limit=1))
    assert {item.record["key"] for item in (first, second, third)} == {
        "inbox/a.png",
        "inbox/b.png",
        "inbox/c.png",
    }
    sqs.delete_message(QueueUrl=url, ReceiptHandle=second.receipt_handle)  # gone meanwhile
    reviewer.skip(third)
    reviewer.release()  # no error for the deleted one; the others are visible at once
    back = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    assert sorted(json.loads(m["Body"])["key"] for m in back) == ["inbox/a.png", "inbox/c.png"]
    sqs.delete_queue(QueueUrl=url)
