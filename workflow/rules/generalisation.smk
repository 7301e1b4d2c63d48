# generalisation (issue 20): the learned network on images and categories it never trained on,
# as tables of the pipeline (sopcorr.evaluate.generalisation, docs/EVALUATION.md). Not part of
# `all`:
#   snakemake --cores all results/<run>/tables/inductive.csv   # half of each category held out
#   snakemake --cores all results/<run>/tables/transfer.csv    # leave one category out
#   snakemake --cores all results/<run>/tables/transfer_from_<source>.csv   # evaluate.transfer_from
# The stages are the run's own rules on other files: the inductive protocol runs manifold,
# pseudo_flow and train_siamese on results/<run>/inductive/ (the fit half, written by
# inductive_split), the leave-one-out network is train_siamese on the other categories, and every
# protocol's records are pair-wise PCK (eval_inductive and its copies, on the protocol's inputs:
# protocol_inputs in common.smk) and its table is eval_table's. A table that exists is shown by the report (report.smk).


rule inductive_split:
    """Split a category's images in half by a seeded hash of the instance id: the fit half's
    instances and feature store (all the fitted steps of the protocol read) and the evaluation's
    instances (every image, the dataset's pairs among the held-out half)."""
    input:
        instances=layout("instances"),
        features=layout("features"),
    output:
        instances=layout("instances", scope=INDUCTIVE),
        features=directory(layout("features", scope=INDUCTIVE)),
        evaluation=layout("evaluation", scope=INDUCTIVE),
    log:
        results("logs", "inductive_split", "{category}.log"),
    benchmark:
        results("benchmarks", "inductive_split", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        seed=config["seed"],
    script:
        "../scripts/inductive_split.py"


use rule manifold as manifold_inductive with:
    input:
        features=layout("features", scope=INDUCTIVE),
        instances=layout("instances", scope=INDUCTIVE),
    output:
        convergence=results(
            INDUCTIVE, "manifold", "{variant}", "{category}", "convergence.csv"
        ),
        embedding=results(
            INDUCTIVE, "manifold", "{variant}", "{category}", "embedding.npz"
        ),
        part_models=results(
            INDUCTIVE, "manifold", "{variant}", "{category}", "part_models.npz"
        ),
        labels=directory(layout("labels", scope=INDUCTIVE)),
        embedded=directory(layout("embedding", scope=INDUCTIVE)),
        embedded_iter1=directory(layout("embedding_iter1", scope=INDUCTIVE)),
        figure=results(
            INDUCTIVE, "manifold", "{variant}", "{category}", "convergence.png"
        ),
    log:
        results("logs", "manifold", INDUCTIVE, "{variant}", "{category}.log"),
    benchmark:
        results("benchmarks", "manifold", INDUCTIVE, "{variant}", "{category}.tsv")
    params:
        state_dir=lambda wc: results(
            INDUCTIVE, "manifold", wc.variant, wc.category, "state"
        ),


use rule pseudo_flow as pseudo_flow_inductive with:
    input:
        embedded=layout("embedding", scope=INDUCTIVE),
        features=layout("features", scope=INDUCTIVE),
        instances=layout("instances", scope=INDUCTIVE),
    output:
        store=directory(layout("flow", scope=INDUCTIVE)),
    log:
        results("logs", "pseudo_flow", INDUCTIVE, "{variant}", "{category}.log"),
    benchmark:
        results("benchmarks", "pseudo_flow", INDUCTIVE, "{variant}", "{category}.tsv")


use rule train_siamese as train_siamese_inductive with:
    input:
        features=per_category(layout("features", scope=INDUCTIVE)),
        flows=per_category(layout("flow", scope=INDUCTIVE)),
        instances=per_category(layout("instances", scope=INDUCTIVE)),
    output:
        model=layout("model_first", scope=INDUCTIVE),
        loss=results(INDUCTIVE, "siamese", "{variant}", "loss.png"),
    log:
        results("logs", "train_siamese", INDUCTIVE, "{variant}.log"),
    benchmark:
        results("benchmarks", "train_siamese", INDUCTIVE, "{variant}.tsv")


use rule pseudo_flow_round as pseudo_flow_round_inductive with:
    input:
        pairs=layout("flow", scope=INDUCTIVE),
        model=previous_model(INDUCTIVE),
        embedded=layout("embedding", scope=INDUCTIVE),
        features=layout("features", scope=INDUCTIVE),
        instances=layout("instances", scope=INDUCTIVE),
    output:
        store=directory(layout("flow_round", scope=INDUCTIVE)),
    log:
        results(
            "logs",
            "pseudo_flow",
            INDUCTIVE,
            "{variant}",
            "round{round}",
            "{category}.log",
        ),
    benchmark:
        results(
            "benchmarks",
            "pseudo_flow",
            INDUCTIVE,
            "{variant}",
            "round{round}",
            "{category}.tsv",
        )


use rule train_siamese_round as train_siamese_round_inductive with:
    input:
        features=per_category(layout("features", scope=INDUCTIVE)),
        flows=round_flows(INDUCTIVE),
        instances=per_category(layout("instances", scope=INDUCTIVE)),
        start=round_start(INDUCTIVE),
    output:
        model=layout("model_round", scope=INDUCTIVE),
        loss=results(INDUCTIVE, "siamese", "{variant}", "round{round}", "loss.png"),
    log:
        results("logs", "train_siamese", INDUCTIVE, "{variant}_round{round}.log"),
    benchmark:
        results("benchmarks", "train_siamese", INDUCTIVE, "{variant}_round{round}.tsv")


rule embed_inductive:
    """Embed every image of a category (the held-out half included, as new images) with the
    manifold fitted on the fit half."""
    input:
        embedding=results(
            INDUCTIVE, "manifold", "{variant}", "{category}", "embedding.npz"
        ),
        features=layout("features"),
    output:
        store=directory(layout("embedding_all", scope=INDUCTIVE)),
    log:
        results("logs", "embed_inductive", "{variant}", "{category}.log"),
    benchmark:
        results("benchmarks", "embed_inductive", "{variant}", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/embed_images.py"


use rule train_siamese as train_siamese_transfer with:
    input:
        features=leave_one_out_inputs("features"),
        flows=leave_one_out_inputs("flow"),
        instances=leave_one_out_inputs("instances"),
    output:
        model=layout("model_without_first"),
        loss=results("siamese", "{variant}", "without_{category}", "loss.png"),
    log:
        results("logs", "train_siamese", "{variant}_without_{category}.log"),
    benchmark:
        results("benchmarks", "train_siamese", "{variant}_without_{category}.tsv")


use rule pseudo_flow_round as pseudo_flow_round_transfer with:
    input:
        pairs=layout("flow"),
        model=previous_model(without=True, category="heldout"),
        embedded=layout("embedding"),
        features=layout("features"),
        instances=layout("instances"),
    output:
        store=directory(layout("flow_without_round")),
    log:
        results(
            "logs",
            "pseudo_flow",
            "{variant}",
            "without_{heldout}",
            "round{round}",
            "{category}.log",
        ),
    benchmark:
        results(
            "benchmarks",
            "pseudo_flow",
            "{variant}",
            "without_{heldout}",
            "round{round}",
            "{category}.tsv",
        )


use rule train_siamese_round as train_siamese_round_transfer with:
    input:
        features=leave_one_out_inputs("features"),
        flows=leave_one_out_round_flows(),
        instances=leave_one_out_inputs("instances"),
        start=round_start(without=True),
    output:
        model=layout("model_without_round"),
        loss=results(
            "siamese", "{variant}", "without_{category}", "round{round}", "loss.png"
        ),
    log:
        results(
            "logs", "train_siamese", "{variant}_without_{category}_round{round}.log"
        ),
    benchmark:
        results(
            "benchmarks",
            "train_siamese",
            "{variant}_without_{category}_round{round}.tsv",
        )


rule eval_inductive:
    """Pair-wise PCK of one category under the inductive protocol: the dataset's pairs among
    the held-out half, every method on the same pairs (the transfer protocols below are this
    rule on their own inputs)."""
    input:
        **protocol_inputs("inductive"),
    output:
        results("eval", "{category}", "inductive.json"),
    log:
        results("logs", "eval_inductive", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_inductive", "{category}.tsv")
    conda:
        "../../envs/sopcorr.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        methods=PROTOCOL_METHODS["inductive"],
        matchers=matcher_params(PROTOCOL_METHODS["inductive"]),
        devices=execution_devices,
        alphas=EVAL["pair_alphas"],
        max_pairs=EVAL["max_eval_pairs"],
        seed=config["seed"],
    script:
        "../scripts/eval_protocol.py"


use rule eval_inductive as eval_transfer with:
    input:
        **protocol_inputs("transfer"),
    output:
        results("eval", "{category}", "transfer.json"),
    log:
        results("logs", "eval_transfer", "{category}.log"),
    benchmark:
        results("benchmarks", "eval_transfer", "{category}.tsv")
    params:
        methods=PROTOCOL_METHODS["transfer"],
        matchers=matcher_params(PROTOCOL_METHODS["transfer"]),


if TRANSFER_FROM:

    use rule eval_inductive as eval_transfer_from with:
        input:
            **protocol_inputs("transfer_from"),
        output:
            results("eval", "{category}", f"transfer_from_{TRANSFER_FROM}.json"),
        log:
            results("logs", "eval_transfer_from", "{category}.log"),
        benchmark:
            results("benchmarks", "eval_transfer_from", "{category}.tsv")
        params:
            methods=PROTOCOL_METHODS["transfer_from"],
            matchers=matcher_params(
                PROTOCOL_METHODS["transfer_from"], network_run=TRANSFER_NETWORK
            ),


use rule eval_table as protocol_table with:
    input:
        lambda wc: per_category(results("eval", "{category}", f"{wc.protocol}.json")),
    output:
        csv=results("tables", "{protocol}.csv"),
        md=results("tables", "{protocol}.md"),
        tex=results("tables", "{protocol}.tex"),
        html=report(
            results("tables", "{protocol}.html"),
            caption="../report/protocol_table.rst",
            category="Tables",
            subcategory="Generalisation",
            labels=lambda wc: {"table": protocol_title(wc.protocol)},
        ),
    log:
        results("logs", "eval_table", "{protocol}.log"),
    benchmark:
        results("benchmarks", "eval_table", "{protocol}.tsv")
    wildcard_constraints:
        protocol="|".join(re.escape(t) for t in PROTOCOL_TABLES),
    params:
        table=lambda wc: wc.protocol,
        notes=lambda wc: protocol_note_params(wc.protocol),
        paper_rows=False,


ruleorder: protocol_table > protocol_unavailable


rule protocol_unavailable:
    """A protocol table this run cannot build: one line says why, the table is not written
    (leave one category out with one category; transfer_from_<source> without
    evaluate.transfer_from: <source>)."""
    output:
        results("tables", "{unavailable}.csv"),
    log:
        results("logs", "eval_table", "{unavailable}.log"),
    wildcard_constraints:
        unavailable=PROTOCOL_UNAVAILABLE,
    conda:
        "../../envs/sopcorr.yaml"
    params:
        message=lambda wc: protocol_unavailable_message(wc.unavailable),
    script:
        "../scripts/protocol_unavailable.py"
