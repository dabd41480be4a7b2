#!/usr/bin/env python3
"""Build the AWS deployment: a SAM template plus the zips it points to.

    python infra/build.py --stage prod            # → infra/build/prod/package/{sam.json,*.zip}

Steps, all inside the build folder so the working tree stays untouched:
1. copy functions/ (the Chalice project) and switch on `automatic_layer` in the copy's config;
2. vendor the shared package into the copy's vendor/ (Chalice silently drops local-path
   requirements, so it must be shipped as files) and write the copy's requirements.txt from
   pyproject's runtime dependencies, which Chalice downloads as Lambda-compatible wheels
   (--skip-deps leaves them out, for checking the template offline);
3. `chalice package --merge-template`, with infra/template-merge.yaml extended by the parts that
   depend on the task types: each function's environment, sizing and name, and the listener's
   permission to invoke exactly these functions;
4. check that every resource the merge touched exists in Chalice's output (a task type without
   its @app.lambda_function in app.py would otherwise become a broken resource).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml
from booklogr_tasks.jobs import known_types
from chalice.utils import to_cfn_resource_name

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = ROOT / "functions"
PACKAGE_SOURCE = ROOT / "layers" / "common" / "src" / "booklogr_tasks"
MERGE_TEMPLATE = Path(__file__).resolve().parent / "template-merge.yaml"
API_FUNCTION = "APIHandler"
# functions/app.py's @app.schedule(name="scheduler"): Chalice adds its EventBridge schedule.
SCHEDULER_FUNCTION = "Scheduler"

# Chalice ships itself in the function zip, and the Lambda runtime provides boto3: leaving them
# out of the layer keeps it well under Lambda's 250 MB limit. granian (with uvloop) serves
# `booklogr-tasks api` on a server of your own; on Lambda, API Gateway does that job.
# The region `chalice package` runs with when none is configured (see packaging_environment).
BUILD_REGION = "us-east-1"
NOT_IN_LAYER = {"chalice", "boto3", "granian", "uvloop"}
# Sub-packages of booklogr_tasks left out of the layer.
NOT_IN_LAYER_PACKAGES = ("cli", "devtools")

# API Gateway gives up after 29 s, so the API function never needs longer. Task functions get
# Lambda's maximum: a large import or export must not be cut off (a cut-off task is retried by
# the listener after its lease, up to TASK_MAX_ATTEMPTS, then marked failed).
API_SIZING = {"Timeout": 29, "MemorySize": 256}
TASK_SIZING = {"Timeout": 900, "MemorySize": 512}
# The scheduler only inserts a task per due schedule: a run takes well under a second.
SCHEDULER_SIZING = {"Timeout": 60, "MemorySize": 256}


def ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def secret_or_parameter(condition: str, secret_arn: str, parameter: str) -> dict[str, Any]:
    """The value from Secrets Manager when its ARN is given, else the plain parameter."""
    resolve = {"Fn::Sub": "{{resolve:secretsmanager:${" + secret_arn + "}}}"}
    return {"Fn::If": [condition, resolve, ref(parameter)]}


DATABASE_URL = secret_or_parameter("DatabaseUrlFromSecret", "DatabaseUrlSecretArn", "DatabaseUrl")
AUTH_SECRET_KEY = secret_or_parameter("AuthSecretFromSecret", "AuthSecretKeyArn", "AuthSecretKey")
VPC_CONFIG = {
    "Fn::If": [
        "InVpc",
        {"SubnetIds": ref("SubnetIds"), "SecurityGroupIds": ref("SecurityGroupIds")},
        ref("AWS::NoValue"),
    ]
}


def layer_requirements() -> list[str]:
    """pyproject's runtime dependencies, minus what the runtime or Chalice already provides."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    keep = []
    for requirement in project["dependencies"]:
        name = requirement.split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip()
        if name.lower() not in NOT_IN_LAYER:
            keep.append(requirement)
    return keep


def function_resources(task_types: list[str], prefix: str) -> dict[str, Any]:
    """The per-function parts of the merge template."""
    resources: dict[str, Any] = {
        API_FUNCTION: {
            "Properties": {
                **API_SIZING,
                "VpcConfig": VPC_CONFIG,
                "Environment": {
                    "Variables": {
                        "DATABASE_URL": DATABASE_URL,
                        "AUTH_SECRET_KEY": AUTH_SECRET_KEY,
                        "SINGLE_USER_MODE": ref("SingleUserMode"),
                        "EXPORT_BUCKET": ref("ExportsBucket"),
                        "DOWNLOAD_URL_SECONDS": ref("DownloadUrlSeconds"),
                    }
                },
            }
        }
    }
    resources[SCHEDULER_FUNCTION] = {
        "Properties": {
            **SCHEDULER_SIZING,
            "VpcConfig": VPC_CONFIG,
            # It creates tasks of users: under the same cap as the API's creates.
            "Environment": {"Variables": {"DATABASE_URL": DATABASE_URL}},
        }
    }
    for task_type in task_types:
        resources[to_cfn_resource_name(task_type)] = {
            "Properties": {
                **TASK_SIZING,
                # Named as `chalice deploy` names it, so the listener finds it either way:
                # TASK_FUNCTION_PREFIX (<app>-<stage>-) + task type.
                "FunctionName": prefix + task_type,
                "VpcConfig": VPC_CONFIG,
                "ReservedConcurrentExecutions": {
                    "Fn::If": [
                        "ReserveConcurrency",
                        ref("TaskFunctionConcurrency"),
                        ref("AWS::NoValue"),
                    ]
                },
                # Lambda's own retries add nothing: a crashed task is requeued by the lease and
                # invoked again by the listener, and a stale event is superseded the same way.
                "EventInvokeConfig": {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": 600},
                "Environment": {
                    "Variables": {
                        "DATABASE_URL": DATABASE_URL,
                        "EXPORT_BUCKET": ref("ExportsBucket"),
                        "TASK_LEASE_SECONDS": ref("TaskLeaseSeconds"),
                        "TASK_MAX_ATTEMPTS": ref("TaskMaxAttempts"),
                    }
                },
            }
        }
    return resources


def merge_template(task_types: list[str], prefix: str) -> dict[str, Any]:
    template: dict[str, Any] = yaml.safe_load(MERGE_TEMPLATE.read_text())
    resources = template["Resources"]
    resources.update(function_resources(task_types, prefix))
    invoke = {
        "Sid": "InvokeTaskFunctions",
        "Effect": "Allow",
        "Action": "lambda:InvokeFunction",
        "Resource": [{"Fn::GetAtt": [to_cfn_resource_name(t), "Arn"]} for t in task_types],
    }
    resources["ListenerPolicy"]["Properties"]["PolicyDocument"]["Statement"].append(invoke)
    template["Outputs"]["TaskFunctionPrefix"] = {
        "Description": "TASK_FUNCTION_PREFIX for the listener",
        "Value": prefix,
    }
    return template


def prepare_project(functions: Path, app_dir: Path, stage: str, skip_deps: bool) -> str:
    """Copy the Chalice project into app_dir, ready to package; returns its app name."""
    if app_dir.exists():
        shutil.rmtree(app_dir)
    shutil.copytree(
        functions,
        app_dir,
        ignore=shutil.ignore_patterns("vendor", "deployments", "__pycache__", "*.pyc"),
    )
    config_path = app_dir / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    # The dependencies and the shared package go into one layer that every function shares,
    # so each function's own zip is just app.py.
    config["automatic_layer"] = True
    config.setdefault("stages", {}).setdefault(stage, {})
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    shutil.copytree(
        PACKAGE_SOURCE,
        app_dir / "vendor" / PACKAGE_SOURCE.name,
        # The command line, the dev runner and the embedded database never run on Lambda.
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *NOT_IN_LAYER_PACKAGES),
    )
    requirements = [] if skip_deps else layer_requirements()
    (app_dir / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
    return str(config["app_name"])


def chalice_command() -> str:
    beside_python = Path(sys.executable).with_name("chalice")
    found = str(beside_python) if beside_python.exists() else shutil.which("chalice")
    if found is None:
        raise SystemExit("chalice is not installed (pip install -e .)")
    return found


def check_merged(template: dict[str, Any], touched: list[str]) -> None:
    resources = template["Resources"]
    broken = [name for name in touched if "Type" not in resources.get(name, {})]
    if broken:
        raise SystemExit(
            f"the merge template configures {broken}, which Chalice did not generate: does "
            "functions/app.py define an @app.lambda_function for every task type?"
        )


def packaging_environment() -> dict[str, str]:
    """The environment for `chalice package`. Chalice wants an AWS region even to write a
    template, and the template does not depend on it (it names none): without one configured,
    packaging uses BUILD_REGION. The region deployed to is the one `aws cloudformation deploy`
    uses."""
    import boto3

    env = dict(os.environ)
    if not boto3.session.Session().region_name:
        env["AWS_DEFAULT_REGION"] = BUILD_REGION
        print(f"no AWS region configured: packaging with {BUILD_REGION} (the template names none)")
    return env


class BuildFailed(Exception):
    """A step of the build failed; its message is one sentence."""


def build(stage: str, out: Path, skip_deps: bool = False, functions: Path = FUNCTIONS) -> Path:
    """Build into `out`; returns the path of the SAM template."""
    task_types = known_types()
    app_dir, package_dir = out / "app", out / "package"
    app_name = prepare_project(functions, app_dir, stage, skip_deps)
    merge = merge_template(task_types, f"{app_name}-{stage}-")
    merge_path = out / "template-merge.json"
    merge_path.write_text(json.dumps(merge, indent=2))
    if package_dir.exists():
        shutil.rmtree(package_dir)
    packaged = subprocess.run(
        [
            chalice_command(),
            "package",
            "--stage",
            stage,
            "--pkg-format",
            "cloudformation",
            "--template-format",
            "json",
            "--merge-template",
            str(merge_path),
            str(package_dir),
        ],
        cwd=app_dir,
        env=packaging_environment(),
        check=False,
    )
    if packaged.returncode != 0:
        raise BuildFailed(
            f"`chalice package` failed with exit code {packaged.returncode}; its output above "
            "says why"
        )
    sam = package_dir / "sam.json"
    touched = [name for name, body in merge["Resources"].items() if "Type" not in body]
    check_merged(json.loads(sam.read_text()), touched)
    return sam


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stage", default="prod", help="Chalice stage (default: prod)")
    parser.add_argument("--out", type=Path, default=None, help="default: infra/build/<stage>")
    parser.add_argument(
        "--skip-deps",
        action="store_true",
        help="leave third-party dependencies out of the layer (offline template check only)",
    )
    parser.add_argument(
        "--functions",
        type=Path,
        default=FUNCTIONS,
        help="the Chalice project (default: functions/)",
    )
    args = parser.parse_args(argv)
    out = (args.out or ROOT / "infra" / "build" / args.stage).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        sam = build(args.stage, out, args.skip_deps, args.functions.resolve())
    except BuildFailed as exc:
        print(f"infra/build.py: {exc}", file=sys.stderr)
        return 1
    print(f"template: {sam}")
    print(f"next: aws cloudformation package --template-file {sam} --s3-bucket <artifacts bucket>")
    print("        --output-template-file packaged.yaml, then aws cloudformation deploy")
    print("        (docs/deploy.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
