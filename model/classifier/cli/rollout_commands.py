"""``rollout start|status|promote|abort|judge``: a candidate version earns its traffic.

On a local store (``--store``) each command acts on ``models/<name>/ROLLOUT``
directly and weighs the evidence a running server keeps beside the records.
With ``--s3 s3://inbox[/prefix]`` (a deployed stack), ``start``, ``promote``
and ``abort`` write a request the installer Lambda carries out on EFS, and
``status`` and ``judge`` read the state the installer mirrors there and the
evidence from CloudWatch, as the scheduled judge does.
"""

from __future__ import annotations

import argparse
import json
import secrets
from typing import Any

from classifier.cli.common import add_store_args, refused, runtime_settings


def _guards(args: argparse.Namespace) -> Any:
    from classifier.store.rollout import Guards

    defaults = Guards()
    return Guards(
        min_requests=args.min_requests if args.min_requests is not None else defaults.min_requests,
        max_error_rate=args.max_error_rate if args.max_error_rate is not None else defaults.max_error_rate,
        max_latency_ratio=args.max_latency_ratio if args.max_latency_ratio is not None else defaults.max_latency_ratio,
        min_agreement=args.min_agreement if args.min_agreement is not None else defaults.min_agreement,
    )


def cmd_start(args: argparse.Namespace) -> int:
    from classifier.store.layout import ModelStore
    from classifier.store.manifest import StoreError
    from classifier.store.rollout import RolloutStore

    mode, percent = ("canary", args.canary) if args.canary is not None else ("shadow", args.shadow)
    try:
        guards = _guards(args)
        if args.s3:
            request = {"action": "start", "id": secrets.token_hex(8), "candidate": args.version, "mode": mode,
                       "percent": percent, "guards": guards.as_dict(), "auto_promote": args.auto_promote}
            return _send(args, request, f"start a {mode} rollout of {args.name} {args.version} at {percent}%")
        rollout = RolloutStore(ModelStore(args.store)).start(
            args.name, args.version, mode=mode, percent=percent, guards=guards, auto_promote=args.auto_promote)
    except StoreError as exc:
        return refused(exc)
    print(f"{args.name}: {mode} rollout {rollout.id} of {rollout.candidate} at {percent}% beside "
          f"{rollout.current} started; a server picks it up at its next refresh "
          f"(`rollout status` shows the evidence)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return _assess(args, act=False)


def cmd_judge(args: argparse.Namespace) -> int:
    return _assess(args, act=True)


def _assess(args: argparse.Namespace, *, act: bool) -> int:
    from classifier.store.manifest import StoreError

    try:
        report = _assess_s3(args, act=act) if args.s3 else _assess_store(args, act=act)
    except StoreError as exc:
        return refused(exc)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_status(report))
    return 0


def _assess_store(args: argparse.Namespace, *, act: bool) -> dict[str, Any]:
    from classifier.serving.local_judge import assess_locally, judge_locally, open_ledger
    from classifier.store.layout import ModelStore
    from classifier.store.rollout import RolloutStore

    rollouts = RolloutStore(ModelStore(args.store))
    ledger = open_ledger(runtime_settings(args))
    if not act:
        return assess_locally(rollouts, ledger, args.name).as_dict()
    assessment, outcome = judge_locally(rollouts, ledger, args.name)
    return {**assessment.as_dict(), "ended": outcome}


def _assess_s3(args: argparse.Namespace, *, act: bool) -> dict[str, Any]:
    import boto3

    from classifier.store.inbox import parse_s3_url
    from classifier.store.manifest import StoreError
    from classifier.store.rollout_judge import DEFAULT_NAMESPACE, DEFAULT_SERVICE, judge_inbox, read_state

    try:
        bucket, _ = parse_s3_url(args.s3)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    s3 = boto3.client("s3")
    found = read_state(s3, bucket, args.name)
    if found is None:
        raise StoreError(f"s3://{bucket} holds no rollout state of {args.name}: no rollout was ever requested there")
    state, _ = found
    report: dict[str, Any] = {"name": args.name, "rollout": state.get("rollout"), "evidence": None,
                              "verdict": None, "last_outcome": state.get("last_outcome"),
                              "last_request": state.get("last_request")}
    if state.get("rollout") is not None:
        (decision,) = judge_inbox(s3, boto3.client("cloudwatch"), bucket, namespace=args.namespace or
                                  DEFAULT_NAMESPACE, service=DEFAULT_SERVICE, act=act, names=[args.name])
        report.update(evidence=decision["evidence"], verdict=decision["verdict"], state=decision["state"],
                      guard=decision["guard"], reason=decision["reason"])
        if act and decision.get("request"):
            report["request"] = decision["request"]
    return report


def cmd_end(args: argparse.Namespace) -> int:
    from classifier.store.layout import ModelStore
    from classifier.store.manifest import StoreError
    from classifier.store.rollout import RolloutStore

    action = args.rollout_command
    reason = args.reason or f"{action} by hand"
    if args.s3:
        return _send(args, {"action": action, "reason": reason}, f"{action} the rollout of {args.name}")
    try:
        rollouts = RolloutStore(ModelStore(args.store))
        rollout = rollouts.get(args.name)
        evidence = None
        if rollout is not None:
            from classifier.serving.local_judge import open_ledger

            ledger = open_ledger(runtime_settings(args))
            evidence = ledger.evidence(rollout).as_dict() if ledger is not None else None
        end = rollouts.promote if action == "promote" else rollouts.abort
        outcome = end(args.name, reason=reason, evidence=evidence)
    except StoreError as exc:
        return refused(exc)
    if action == "promote":
        print(f"{args.name}: rollout promoted: {outcome['candidate']} is current (was {outcome['current']})")
    else:
        print(f"{args.name}: rollout of {outcome['candidate']} aborted; {outcome['current']} stays current")
    return 0


def _send(args: argparse.Namespace, request: dict[str, Any], what: str) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from classifier.store.inbox import parse_s3_url
    from classifier.store.manifest import StoreError, check_name
    from classifier.store.rollout_judge import send_request

    try:
        check_name(args.name)
        bucket, prefix = parse_s3_url(args.s3)
    except (ValueError, StoreError) as exc:
        return refused(exc)
    try:
        key = send_request(boto3.client("s3"), bucket, prefix, args.name, request)
    except (ClientError, BotoCoreError) as exc:
        return refused(f"writing the rollout request to s3://{bucket} failed: {exc}")
    print(f"wrote s3://{bucket}/{key}: the installer Lambda will {what}; "
          f"`rollout status --s3 {args.s3}` shows what it did")
    return 0


def format_status(report: dict[str, Any]) -> str:
    """``rollout status``'s table: current vs candidate, the agreement and the verdict."""
    name, rollout = report["name"], report.get("rollout")
    lines = []
    if rollout is None:
        lines.append(f"{name}: no rollout running")
    else:
        lines.append(f"{name}: {rollout['mode']} {rollout['percent']}% of {rollout['candidate']} (candidate) beside "
                     f"{rollout['current']} (current), since {rollout['started_at']} [{rollout['id']}]")
        guards = rollout["guards"]
        lines.append("guards: " + ", ".join(f"{k} {v}" for k, v in guards.items())
                     + f"; auto-promote: {'yes' if rollout['auto_promote'] else 'no'}")
    evidence = report.get("evidence")
    if evidence:
        lines.append("")
        lines.append(f"{'':10} {'VERSION':31} {'ROLE':8} {'REQUESTS':>9} {'ERRORS':>7} {'ERR RATE':>9} "
                     f"{'P50 MS':>8} {'P95 MS':>8}")
        for side in ("current", "candidate"):
            e = evidence[side]
            rate = "-" if e["error_rate"] is None else f"{e['error_rate']:.4f}"
            p50 = "-" if e["p50_ms"] is None else f"{e['p50_ms']:.1f}"
            p95 = "-" if e["p95_ms"] is None else f"{e['p95_ms']:.1f}"
            lines.append(f"{side:10} {e['version']:31} {e['role']:8} {e['requests']:>9} {e['errors']:>7} "
                         f"{rate:>9} {p50:>8} {p95:>8}")
        if rollout and rollout["mode"] == "shadow":
            agreement = "-" if evidence["agreement"] is None else f"{evidence['agreement']:.4f}"
            lines.append(f"top-1 agreement: {agreement} ({evidence['agreed']} of {evidence['compared']} images)")
    if report.get("verdict"):
        lines.append(f"verdict: {report['verdict']} ({report['reason']})")
    ended = report.get("ended")
    if ended:
        lines.append(f"judge: rollout {ended['outcome']}")
    if report.get("request"):
        lines.append(f"judge: wrote {report['request']} for the installer")
    last = report.get("last_outcome")
    if last and rollout is None:
        lines.append(f"last rollout: {last['candidate']} {last['outcome']} at {last['ended_at']}: {last['reason']}")
    request = report.get("last_request")
    if request and request.get("status") == "refused":
        lines.append(f"last request ({request['action']}) refused by the installer: {request['reason']}")
    return "\n".join(lines)


def register(sub: Any) -> None:
    """Add the ``rollout`` group to the CLI's subparsers."""
    group = sub.add_parser("rollout", help="canary or shadow a candidate version, judged by guards")
    commands = group.add_subparsers(dest="rollout_command", required=True, title="what to do", metavar="ACTION",
                                    help="start, status, judge, promote or abort")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = commands.add_parser(name, help=help_text)
        add_store_args(p)
        p.add_argument("--s3", metavar="s3://bucket/prefix",
                       help="the model inbox of a deployed stack: act through the installer Lambda")
        return p

    p = command("start", "start a canary or shadow rollout of VERSION")
    p.add_argument("version", metavar="VERSION")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--canary", type=int, metavar="PCT", help="the candidate answers PCT%% of requests")
    mode.add_argument("--shadow", type=int, metavar="PCT", help="PCT%% of requests also run on the candidate")
    p.add_argument("--min-requests", type=int, metavar="N", help="candidate requests before judging (100)")
    p.add_argument("--max-error-rate", type=float, metavar="X", help="abort above this error rate (0.01)")
    p.add_argument("--max-latency-ratio", type=float, metavar="X",
                   help="abort when its p95 is over X times the current version's (1.5)")
    p.add_argument("--min-agreement", type=float, metavar="X",
                   help="shadow: abort under this top-1 agreement (0.9)")
    p.add_argument("--auto-promote", action="store_true", help="promote it once every guard holds")
    p.set_defaults(func=cmd_start)

    for name, help_text, func in (("status", "current vs candidate on live traffic, and the verdict", cmd_status),
                                  ("judge", "judge now: abort on a breach, promote if ready and auto-promoting",
                                   cmd_judge)):
        p = command(name, help_text)
        p.add_argument("--json", action="store_true", help="print the report as JSON")
        p.add_argument("--namespace", help="with --s3: the metrics namespace (default Classifier)")
        p.set_defaults(func=func)

    for name, help_text in (("promote", "make the candidate current and end the rollout"),
                            ("abort", "end the rollout; the current version stays")):
        p = command(name, help_text)
        p.add_argument("--reason", help="why, for the rollout log")
        p.set_defaults(func=cmd_end)
