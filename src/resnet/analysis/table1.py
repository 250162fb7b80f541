"""``resnet reproduce table1``: our counted parameters and multiply-adds for every ImageNet net, beside Table 1.

Counts every ImageNet depth with both bottleneck stride placements (v1: the paper's released models, stride
on the first 1x1; v1.5: torchvision's, stride on the 3x3) and all three shortcut options, plus the plain
nets. The paper lists one figure per depth ("FLOPs", multiply-adds at 224x224); its 3.6 for 34 layers is
our 3.66 truncated, the others round.
"""

from __future__ import annotations

from pathlib import Path

from resnet.analysis.plots import pyplot, save
from resnet.analysis.report import markdown_table, write_csv
from resnet.io import atomic_write_text
from resnet.models.arch import imagenet_architecture
from resnet.models.cost import architecture_cost
from resnet.paper import IMAGENET_PARAMS_B, TABLE1_GMACS, TABLE1_LAYERS


def table1_rows() -> list[list]:
    rows = []
    for depth in TABLE1_LAYERS:
        strides = ("1x1", "3x3") if depth >= 50 else ("1x1",)
        for stride in strides:
            for option in ("A", "B", "C", None):
                name = f"{'plain' if option is None else 'resnet'}{depth}"
                arch = imagenet_architecture(
                    depth, option is not None, shortcut=option or "B", bottleneck_stride=stride
                )
                cost = architecture_cost(arch, (224, 224))
                params, macs = cost.params, cost.macs
                version = ("v1 (paper)" if stride == "1x1" else "v1.5 (torchvision)") if depth >= 50 else "-"
                # Table 1's figure describes the nets as the paper built them: identity (A) shortcuts or their
                # plain twins for 18/34 layers (B adds 0.02), option B for the bottleneck nets.
                applies = option in ("A", "B", None) if depth < 50 else option == "B"
                paper_macs = TABLE1_GMACS[depth] if applies else None
                paper_params = IMAGENET_PARAMS_B[depth] if option == "B" else None
                rows.append(
                    [
                        depth,
                        name,
                        version,
                        option or "none (plain)",
                        params,
                        paper_params,
                        round(macs / 1e9, 3),
                        paper_macs,
                        None if paper_macs is None else round(macs / 1e9 - paper_macs, 3),
                    ]
                )
    return rows


HEADERS = [
    "depth",
    "model",
    "bottleneck stride",
    "shortcut",
    "params",
    "known params (B)",
    "GMACs (ours)",
    "GMACs (paper, Table 1)",
    "difference",
]


def table1_report(out: Path) -> Path:
    """REPORT.md, CSV and bar chart of our counts beside Table 1 in ``out``; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    rows = table1_rows()
    write_csv(out / "table1.csv", HEADERS, rows)
    shown = [
        [
            *r[:4],
            f"{r[4]:,}",
            f"{r[5]:,}" if r[5] else None,
            f"{r[6]:.3f}",
            r[7],
            None if r[8] is None else f"{r[8]:+.3f}",
        ]
        for r in rows
    ]
    v1 = {r[0]: r[6] for r in rows if r[3] == "B" and r[2] in ("-", "v1 (paper)")}
    v15 = {r[0]: r[6] for r in rows if r[3] == "B" and r[2] in ("-", "v1.5 (torchvision)")}
    depths = list(TABLE1_LAYERS)
    fig, ax = pyplot().subplots(figsize=(6.5, 4))
    xs = range(len(depths))
    ax.bar([x - 0.27 for x in xs], [TABLE1_GMACS[d] for d in depths], 0.27, label="paper (Table 1)")
    ax.bar(list(xs), [v1[d] for d in depths], 0.27, label="ours, v1 (stride on 1x1)")
    ax.bar([x + 0.27 for x in xs], [v15[d] for d in depths], 0.27, label="ours, v1.5 (stride on 3x3)")
    ax.set_xticks(list(xs), [f"{d} layers" for d in depths])
    ax.set_ylabel("multiply-adds (1e9) at 224x224")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    save(fig, out / "table1.png")
    text = f"""# Table 1: complexity of the ImageNet nets

Parameters and multiply-adds (the paper's "FLOPs") of convolutions and the fc layer for one 224x224 image,
counted from each net's architecture by propagating the map size through every layer (no forward
pass; the tests check these counts against hooks on the built modules and against torch's FLOP
counter). Option B is the paper's choice for ResNet-50/101/152;
Table 2 uses option A for 18/34 layers.
The "known params" column is the widely published count with option B and 1000 classes.

![multiply-adds](table1.png)

{markdown_table(HEADERS, shown)}

Reading: with the stride on the first 1x1 conv (the paper's released models), our counts round to Table 1's
1.8 / 3.6 / 3.8 / 7.6 / 11.3 (34 layers: 3.66, which the paper truncates to 3.6); torchvision's v1.5 adds
0.23 GMACs to each bottleneck net. Shortcut options change parameters, and option C also the cost.
"""
    report = out / "REPORT.md"
    atomic_write_text(report, text)
    return report
