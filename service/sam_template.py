"""The SAM template as plain CloudFormation: AWS's own SAM translator, run offline.

CloudFormation runs the `AWS::Serverless-2016-10-31` transform on AWS; moto has no transform, so the
tests translate with `aws-sam-translator` (the library behind that transform) and create the result in
moto's CloudFormation. Needs the `dev` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATE = Path(__file__).resolve().parents[1] / "workflow" / "template.yaml"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as a dict, intrinsic-function tags (`!Ref`, `!GetAtt`, `!Sub`) as their long form."""
    from samtranslator.yaml_helper import yaml_parse

    template: dict[str, Any] = yaml_parse(path.read_text())
    return template


def translate(
    template: dict[str, Any], *, region: str, parameters: dict[str, str] | None = None
) -> dict[str, Any]:
    """CloudFormation for a SAM template whose `CodeUri`/`DefinitionUri` already point at S3 (packaged).

    The translator asks IAM for AWS managed policy ARNs only when a template names one; ours names none.
    """
    import copy

    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=region))
    result: dict[str, Any] = translator.translate(copy.deepcopy(template), dict(parameters or {}))
    return result
