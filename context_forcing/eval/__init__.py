"""PanWorld evaluation with exact ground truth (reference/benchmarks.md, DESIGN.md section 9).

Modules, in the order data flows through them:
  cases       eval episodes, their labels, the P1 prefix t0 and two chance worlds each
  references  ground-truth / chance / mean-fill videos and `oracle:LAYOUT` (the memory's own planner on truth)
  protocols   P1 / P2 videos of a model through a streaming session
  revisits    M1 / M2 error sums of one episode per gap bin and sink split
  metrics     pooling, chance normalisation, bootstrap over episodes, ECL, sharpness
  identity    M3: non-learned decoders of the subject's hidden attributes and hat
  dynamics    motion (action following), M4 drift, M5 resets, M6 cycles
  scoring     every metric of P1 / P2 videos -> the report's fields
  evaluate    `evaluate(spec, episodes, seconds, ...)`: the library entry
  plots, table, command: PNGs, Markdown tables, the `eval` / `table` commands for the CLI
  pinned      a shipped checkpoint's pinned figure, recomputed and read from its model card (tests/shipped/)

Entry points: `context_forcing.eval.evaluate.evaluate`, `context_forcing.eval.table.markdown_table`,
`context_forcing.eval.plots.plot_revisits`, `context_forcing.eval.command` (CLI glue). This package's __init__
imports nothing, so `import context_forcing.eval.table` does not load torch.
"""
