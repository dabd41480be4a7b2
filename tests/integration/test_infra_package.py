"""infra/build.py packages the Chalice app for AWS without AWS credentials or network, and the
template it writes holds what the deployment needs, scoped to what it needs."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from booklogr_tasks.core.settings import Settings
from booklogr_tasks.jobs import known_types
from chalice.utils import to_cfn_resource_name

from tests.api.support import load_app
from tests.integration import fake_aws as aws
from tests.integration.fake_aws import deploy_functions

fake_aws = aws.fake_aws

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "infra" / "build.py"


def load_build_module() -> Any:
    spec = importlib.util.spec_from_file_location("infra_build", BUILD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One offline build, in a temporary folder, by a process that has no AWS identity and
    no region."""
    out = tmp_path_factory.mktemp("infra")
    home = out / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "PIP_")) and key != "HOME"
    }
    env.update(
        HOME=str(home),
        AWS_CONFIG_FILE=str(home / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"),
        # Any attempt to reach a package index fails instead of hanging.
        PIP_NO_INDEX="1",
    )
    vendor_before = (ROOT / "functions" / "vendor").exists()
    result = subprocess.run(
        [sys.executable, str(BUILD), "--stage", "prod", "--out", str(out / "b"), "--skip-deps"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no AWS region configured: packaging with us-east-1" in result.stdout
    assert "Traceback" not in result.stderr
    # The working tree is left as it was: everything is built in the output folder.
    assert (ROOT / "functions" / "vendor").exists() == vendor_before
    return out / "b" / "package"


@pytest.fixture(scope="module")
def template(built: Path) -> dict[str, Any]:
    return json.loads((built / "sam.json").read_text())


def functions_of(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: body["Properties"]
        for name, body in template["Resources"].items()
        if body["Type"] == "AWS::Serverless::Function"
    }


def iam_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document["Statement"]
    return statements if isinstance(statements, list) else [statements]


def test_one_function_per_task_type_plus_the_api_and_the_scheduler(
    template: dict[str, Any],
) -> None:
    functions = functions_of(template)
    expected = {"APIHandler", "Scheduler"} | {to_cfn_resource_name(t) for t in known_types()}
    assert set(functions) == expected

    api = functions["APIHandler"]
    assert api["Handler"] == "app.app"
    assert api["Timeout"] <= 29  # API Gateway's own limit
    api_env = api["Environment"]["Variables"]
    assert {"DATABASE_URL", "AUTH_SECRET_KEY", "EXPORT_BUCKET"} <= set(api_env)
    assert api_env["POWERTOOLS_SERVICE_NAME"] == "booklogr-tasks"  # Chalice's config survives

    app_module = load_app()
    for task_type in known_types():
        fn = functions[to_cfn_resource_name(task_type)]
        # Lambda imports `app` and looks the handler up by name: it must be a module attribute.
        module, attribute = fn["Handler"].split(".")
        assert module == "app"
        assert callable(getattr(app_module, attribute, None)), (
            f"{fn['Handler']} (task type {task_type}) is not a name in functions/app.py"
        )
        # The name the listener derives: TASK_FUNCTION_PREFIX (<app>-<stage>-) + type.
        assert fn["FunctionName"] == f"booklogr-tasks-prod-{task_type}"
        assert fn["Layers"] == [{"Ref": "ManagedLayer"}]
        assert fn["Timeout"] == 900
        assert fn["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
        variables = fn["Environment"]["Variables"]
        assert variables["EXPORT_BUCKET"] == {"Ref": "ExportsBucket"}
        assert "DATABASE_URL" in variables
        assert "AUTH_SECRET_KEY" not in variables, "task functions never see the JWT key"


def test_secrets_come_from_parameters_or_secrets_manager(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["DatabaseUrl"]["NoEcho"] is True
    assert params["AuthSecretKey"]["NoEcho"] is True
    database_url = functions_of(template)["APIHandler"]["Environment"]["Variables"]["DATABASE_URL"]
    condition, from_secret, from_parameter = database_url["Fn::If"]
    assert condition == "DatabaseUrlFromSecret"
    assert from_secret == {"Fn::Sub": "{{resolve:secretsmanager:${DatabaseUrlSecretArn}}}"}
    assert from_parameter == {"Ref": "DatabaseUrl"}


def test_layer_holds_the_shared_package_and_the_function_zip_only_the_app(built: Path) -> None:
    with zipfile.ZipFile(built / "layer-deployment.zip") as layer:
        names = set(layer.namelist())
    site = f"python/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"
    for module in ("__init__.py", "worker/runner.py", "worker/lambda_invoker.py", "storage/s3.py"):
        assert f"{site}/booklogr_tasks/{module}" in names
    assert f"{site}/booklogr_tasks/db/schema/0001_tasks.sql" in names
    assert f"{site}/booklogr_tasks/http/openapi.json" in names
    # The command line, the dev runner and the embedded database stay out of Lambda.
    assert not any(name.startswith(f"{site}/booklogr_tasks/devtools") for name in names)
    assert not any(name.startswith(f"{site}/booklogr_tasks/cli") for name in names)
    assert not any("__pycache__" in name for name in names)

    with zipfile.ZipFile(built / "deployment.zip") as app_zip:
        app_names = set(app_zip.namelist())
    assert "app.py" in app_names
    assert not any(name.startswith("booklogr_tasks/") for name in app_names)


def test_exports_bucket_is_private_and_aborts_abandoned_uploads(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["ExportsBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket"
    props = bucket["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    assert all(rule["Status"] == "Enabled" for rule in rules.values())
    abort = rules["abort-abandoned-uploads"]
    assert abort["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] >= 1
    # Retention keeps each user's newest exports however old: S3 expires only uploads.
    assert "ExpirationInDays" not in abort and "Prefix" not in abort
    expire = rules["expire-unclaimed-uploads"]
    assert expire["Prefix"] == "uploads/" and expire["ExpirationInDays"] >= 2
    assert set(rules) == {"abort-abandoned-uploads", "expire-unclaimed-uploads"}
    # A browser may post a direct upload's signed form; nothing else crosses origins.
    (cors,) = props["CorsConfiguration"]["CorsRules"]
    assert cors["AllowedMethods"] == ["POST"]


def test_function_permissions_reach_the_exports_bucket_only(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    for props in functions_of(template).values():
        assert props["Role"] == {"Fn::GetAtt": ["DefaultRole", "Arn"]}
    access = resources["ExportsBucketAccess"]["Properties"]
    assert access["Roles"] == [{"Ref": "DefaultRole"}]
    bucket_arns = [
        {"Fn::GetAtt": ["ExportsBucket", "Arn"]},
        {"Fn::Sub": "${ExportsBucket.Arn}/*"},
    ]
    for statement in iam_statements(access["PolicyDocument"]):
        assert statement["Effect"] == "Allow"
        assert all(action.startswith("s3:") for action in statement["Action"])
        assert statement["Resource"] in bucket_arns
    # Chalice's own policy on the role: logs, nothing else.
    (own,) = resources["DefaultRole"]["Properties"]["Policies"]
    for statement in iam_statements(own["PolicyDocument"]):
        assert all(action.startswith("logs:") for action in statement["Action"])


def test_listener_may_invoke_exactly_the_task_functions(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    policy = resources["ListenerPolicy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    statements = iam_statements(policy["Properties"]["PolicyDocument"])
    invoke = [s for s in statements if s["Action"] == "lambda:InvokeFunction"]
    assert len(invoke) == 1
    assert invoke[0]["Resource"] == [
        {"Fn::GetAtt": [to_cfn_resource_name(t), "Arn"]} for t in known_types()
    ]
    for statement in statements:
        if statement is not invoke[0]:
            assert all(action.startswith("s3:") for action in statement["Action"])
            assert "*" not in json.dumps(statement["Resource"]).replace("Arn}/*", "")
    assert resources["ListenerRole"]["Properties"]["ManagedPolicyArns"] == [
        {"Ref": "ListenerPolicy"}
    ]
    assert template["Outputs"]["TaskFunctionPrefix"]["Value"] == "booklogr-tasks-prod-"


def test_layer_requirements_are_the_runtime_dependencies_minus_what_lambda_provides() -> None:
    requirements = load_build_module().layer_requirements()
    names = {r.split("[")[0].split(">")[0].split("<")[0].lower() for r in requirements}
    assert {"psycopg", "psycopg-pool", "pydantic", "pyjwt", "aws-lambda-powertools"} <= names
    assert not names & {"chalice", "boto3", "granian", "uvloop"}


def test_a_task_type_without_its_function_stops_the_build() -> None:
    build = load_build_module()
    merge = build.merge_template(["csv_export"], "booklogr-tasks-prod-")
    chalice_output = {"Resources": {"APIHandler": {"Type": "AWS::Serverless::Function"}}}
    touched = [name for name, body in merge["Resources"].items() if "Type" not in body]
    with pytest.raises(SystemExit, match="CsvExport"):
        build.check_merged(chalice_output, touched)


def test_api_gateways_own_answers_are_json_errors_that_echo_nothing(
    template: dict[str, Any],
) -> None:
    responses = template["Resources"]["RestAPI"]["Properties"]["GatewayResponses"]
    missing = responses["MISSING_AUTHENTICATION_TOKEN"]
    assert missing["StatusCode"] == 404
    for response in responses.values():
        body = json.loads(response["ResponseTemplates"]["application/json"])
        assert set(body) == {"error", "message"}
        assert "$" not in json.dumps(body)  # no request value is substituted in
        assert response["ResponseParameters"]["Headers"]["Access-Control-Allow-Origin"]


def test_an_eventbridge_schedule_runs_the_scheduler_every_few_minutes(
    template: dict[str, Any], settings: Settings, conn: Any, fake_aws: None
) -> None:
    scheduler = functions_of(template)["Scheduler"]
    (event,) = scheduler["Events"].values()
    assert event["Type"] == "Schedule"
    expression = event["Properties"]["Schedule"]
    assert re.fullmatch(r"rate\(([1-5]) minutes?\)", expression), expression
    assert scheduler["Timeout"] <= 60 and scheduler["Layers"] == [{"Ref": "ManagedLayer"}]
    variables = scheduler["Environment"]["Variables"]
    assert "DATABASE_URL" in variables and "AUTH_SECRET_KEY" not in variables

    # EventBridge (moto) takes the rule and its target as the template declares them.
    name = "booklogr-tasks-prod-scheduler"
    deploy_functions([name])
    arn = boto3.client("lambda").get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    events = boto3.client("events")
    events.put_rule(Name="booklogr-tasks-scheduler", ScheduleExpression=expression)
    events.put_targets(Rule="booklogr-tasks-scheduler", Targets=[{"Id": "1", "Arn": arn}])
    rule = events.describe_rule(Name="booklogr-tasks-scheduler")
    assert rule["ScheduleExpression"] == expression and rule["State"] == "ENABLED"
    targets = events.list_targets_by_rule(Rule="booklogr-tasks-scheduler")["Targets"]
    assert [t["Arn"] for t in targets] == [arn]

    # What the schedule invokes is the listener's scheduling code: a due schedule, one task.
    conn.execute(
        "INSERT INTO export_schedules (owner_id, format, every, keep, next_run_at) "
        "VALUES (5, 'csv', 'day', 3, now())"
    )
    module, attribute = scheduler["Handler"].split(".")
    assert module == "app"
    handler = getattr(load_app(), attribute)
    scheduled_event = {  # as EventBridge sends it
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-07T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/booklogr-tasks-scheduler"],
        "detail": {},
    }
    answer = handler(scheduled_event, None)
    assert len(answer["created"]) == 1 and answer["waiting"] == 0
    assert handler(scheduled_event, None)["created"] == []
    row = conn.execute("SELECT type, created_by FROM tasks").fetchone()
    assert row == {"type": "csv_export", "created_by": 5}
