"""A plan as a JSON-ready dict (see plan.schema.json) and as rich tables."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from importlib import resources
from typing import Any

from rich.console import Console
from rich.table import Table

from bxb_stream.deployment import PipelineConfig
from bxb_stream.plan.cdk import NoSuggestion, cdk_context
from bxb_stream.plan.compute import Plan, Section, plan
from bxb_stream.plan.model import Pipeline, Workload
from bxb_stream.plan.prices import PriceSheet

SCHEMA_VERSION = 1
_PER = {1e3: "/1K", 1e6: "/1M"}


def load_schema() -> dict[str, Any]:
    return json.loads((resources.files("bxb_stream.plan") / "plan.schema.json").read_text(encoding="utf-8"))


def make_report(
    workload: Workload,
    pipeline: Pipeline,
    prices: PriceSheet,
    base: PipelineConfig | None = None,
    clickhouse_url: str = "",
) -> dict[str, Any]:
    """The plan for ``workload`` plus the same plan with aggregation flipped, as one JSON-ready dict.

    ``base`` and ``clickhouse_url`` shape the suggested cdk.json context (see ``plan.cdk``); when
    none would deploy, ``cdk_context`` is null and a note says why."""
    main = plan(workload, pipeline, prices)
    other = plan(replace(workload, aggregate=not workload.aggregate), pipeline, prices)
    without, with_ = (other, main) if workload.aggregate else (main, other)
    report = to_dict(main, without, with_)
    try:
        report["cdk_context"] = cdk_context(main, base, clickhouse_url=clickhouse_url)
    except NoSuggestion as exc:
        report["cdk_context"] = None
        report["notes"].append(f"No cdk.json context suggested: {exc}.")
    return report


def _money(x: float) -> float:
    return round(x, 2)


def _section(section: Section) -> dict[str, Any]:
    return {
        "lines": [
            {
                "item": line.item,
                "quantity": round(line.quantity, 3),
                "unit": line.unit,
                "unit_price_usd": line.unit_price,
                "price_per": line.per,
                "usd": _money(line.usd),
                "price_key": line.price_key,
            }
            for line in section.lines
        ],
        "total_usd": _money(section.total),
    }


def comparison_line(p: Plan) -> str:
    k = p.kinesis
    cheap, dear = (k.provisioned, k.on_demand) if k.cheaper_mode == "provisioned" else (k.on_demand, k.provisioned)
    pct = k.saving / dear.total if dear.total else 0.0
    other = "on-demand" if k.cheaper_mode == "provisioned" else "provisioned"
    return (
        f"Kinesis {k.cheaper_mode} is cheaper than {other} by ${k.saving:,.2f}/month ({pct:.0%} less): "
        f"${cheap.total:,.2f} vs ${dear.total:,.2f}."
    )


def aggregation_line(without: Plan, with_: Plan) -> str:
    saved = without.total() - with_.total()
    return (
        f"KPL aggregation ({with_.kinesis.events_per_record} events/record): shards "
        f"{without.kinesis.shards} -> {with_.kinesis.shards}, monthly total ${without.total():,.2f} -> "
        f"${with_.total():,.2f} ({'saves' if saved >= 0 else 'costs'} ${abs(saved):,.2f}/month)."
    )


def to_dict(p: Plan, without: Plan, with_: Plan) -> dict[str, Any]:
    k, w = p.kinesis, p.workload
    return {
        "schema_version": SCHEMA_VERSION,
        "inputs": {
            "workload": {**asdict(w), "paths": list(w.paths)},
            "pipeline": asdict(p.pipeline),
        },
        "prices": {"region": p.prices.region, "read_on": p.prices.read_on, "file": p.prices.source_file},
        "kinesis": {
            "aggregate": w.aggregate,
            "events_per_record": k.events_per_record,
            "record_bytes": round(k.record_bytes, 1),
            "records_per_sec": round(k.records_per_sec, 3),
            "peak_bytes_per_sec": round(k.peak_bytes_per_sec, 1),
            "peak_records_per_sec": round(k.peak_records_per_sec, 3),
            "shards": {
                "by_bytes": k.shards_by_bytes,
                "by_records": k.shards_by_records,
                "by_egress": k.shards_by_egress,
                "required": k.shards,
                "write_utilisation": round(k.write_utilisation, 4),
            },
            "provisioned": _section(k.provisioned),
            "on_demand": _section(k.on_demand),
            "cheaper_mode": k.cheaper_mode,
            "saving_usd": _money(k.saving),
        },
        "firehose": _section(p.firehose),
        "lambda": {
            **_section(p.lambdas),
            "functions": [
                {
                    "function": u.function,
                    "invocations_per_month": round(u.invocations_per_month, 1),
                    "gb_seconds_per_month": round(u.gb_seconds_per_month, 1),
                    "events_per_invocation": round(u.events_per_invocation, 1),
                }
                for u in p.lambda_use
            ],
        },
        "s3": _section(p.s3),
        "idempotency_table": {
            "section": _section(p.idempotency_table),
            "window_days": p.pipeline.dedup_window_days,
            "times_pipeline": round(p.idempotency_table.total / p.total(), 2),
        },
        "latency": {
            lat.path: {
                "p50_s": round(lat.p50_s, 3),
                "worst_s": round(lat.worst_s, 3),
                "stages": [
                    {"stage": s.name, "p50_s": round(s.p50_s, 3), "worst_s": round(s.worst_s, 3), "note": s.note}
                    for s in lat.stages
                ],
            }
            for lat in p.latency
        },
        "total": {
            "provisioned_usd": _money(p.total("provisioned")),
            "on_demand_usd": _money(p.total("on-demand")),
            "mode": k.cheaper_mode,
            "monthly_usd": _money(p.total()),
        },
        "comparison": comparison_line(p),
        "aggregation": {
            "shards_without": without.kinesis.shards,
            "shards_with": with_.kinesis.shards,
            "events_per_record": with_.kinesis.events_per_record,
            "monthly_usd_without": _money(without.total()),
            "monthly_usd_with": _money(with_.total()),
            "summary": aggregation_line(without, with_),
        },
        "cdk_context": None,  # make_report fills it in
        "notes": list(p.notes),
    }


def _cost_table(title: str, sections: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("Item")
    table.add_column("Quantity / month", justify="right")
    table.add_column("Unit price", justify="right")
    table.add_column("USD / month", justify="right")
    for name, section in sections:
        for line in section["lines"]:
            table.add_row(
                f"{name}: {line['item']}",
                f"{line['quantity']:,.1f} {line['unit']}",
                f"${line['unit_price_usd']:.6g}" + _PER.get(line["price_per"], ""),
                f"{line['usd']:,.2f}",
            )
        table.add_row(f"[bold]{name} total[/bold]", "", "", f"[bold]{section['total_usd']:,.2f}[/bold]")
    return table


def render_table(report: dict[str, Any], console: Console) -> None:
    k = report["kinesis"]
    w = report["inputs"]["workload"]
    shards = k["shards"]
    console.print(
        f"[bold]bxb-stream plan[/bold]: {w['events_per_sec']:,g} events/s x {w['avg_bytes']:,g} B, "
        f"peak x{w['peak_factor']:g}, headroom {w['headroom']:.0%}, paths {','.join(w['paths'])}, "
        f"aggregate {'on' if w['aggregate'] else 'off'}; prices {report['prices']['region']} "
        f"read {report['prices']['read_on']}"
    )
    console.print(
        f"Kinesis: {k['events_per_record']} event(s)/record of {k['record_bytes']:,.0f} B, "
        f"{k['peak_records_per_sec']:,.1f} records/s and {k['peak_bytes_per_sec'] / 1048576:,.2f} MiB/s at peak -> "
        f"[bold]{shards['required']} shards[/bold] (bytes {shards['by_bytes']}, records {shards['by_records']}, "
        f"egress {shards['by_egress']}; {shards['write_utilisation']:.0%} utilised)"
    )
    console.print(
        _cost_table(
            "Kinesis, monthly",
            [("provisioned", k["provisioned"]), ("on-demand", k["on_demand"])],
        )
    )
    console.print(
        _cost_table(
            "Delivery, monthly",
            [("firehose", report["firehose"]), ("lambda", report["lambda"]), ("s3", report["s3"])],
        )
    )
    lat = Table(title="Latency (seconds)", title_justify="left")
    lat.add_column("Path")
    lat.add_column("Stage")
    lat.add_column("p50", justify="right")
    lat.add_column("Worst", justify="right")
    lat.add_column("Why")
    for path, info in report["latency"].items():
        for stage in info["stages"]:
            lat.add_row(path, stage["stage"], f"{stage['p50_s']:.2f}", f"{stage['worst_s']:.2f}", stage["note"])
        lat.add_row(
            f"[bold]{path}[/bold]",
            "[bold]end to end[/bold]",
            f"[bold]{info['p50_s']:.1f}[/bold]",
            f"[bold]{info['worst_s']:.1f}[/bold]",
            "",
        )
    console.print(lat)
    total = report["total"]
    console.print(
        f"[bold]Total: ${total['monthly_usd']:,.2f}/month[/bold] with Kinesis {total['mode']} "
        f"(provisioned ${total['provisioned_usd']:,.2f}, on-demand ${total['on_demand_usd']:,.2f})"
    )
    console.print(report["comparison"])
    idem = report["idempotency_table"]
    console.print(
        f"Dedup without ClickHouse: a DynamoDB idempotency table (one conditional write per event, keys kept "
        f"{idem['window_days']} days) would cost ${idem['section']['total_usd']:,.2f}/month, "
        f"{idem['times_pipeline']:g}x this whole pipeline; the resolver in ClickHouse adds no AWS cost."
    )
    console.print(report["aggregation"]["summary"])
    for note in report["notes"]:
        console.print(f"[yellow]Note:[/yellow] {note}", highlight=False)
    if report["cdk_context"] is not None:
        console.print("Suggested cdk.json context (checked against the CDK app's config):")
        console.print(json.dumps({"context": report["cdk_context"]}, indent=2), markup=False, highlight=False)
