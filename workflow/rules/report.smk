# Stage 9: the audit report, HTML + JSON with full provenance (interp.report).
# report.pdf is printed beside index.html by headless Chromium when it is installed; it is not a declared
# output because the run must succeed without it (the log then says why no PDF was written).


rule report:
    input:
        unpack(report_inputs),
    output:
        html=f"reports/{RUN}/index.html",
        json=f"reports/{RUN}/report.json",
    params:
        **rule_params({"config": config, "benchmarks": f"{R}/benchmarks", "run": RUN}),
    log:
        log_path("report"),
    benchmark:
        bench_path("report")
    threads: 1
    resources:
        **fixed(mem_mb=4000, runtime=10),
    conda:
        ENV
    shell:
        stage_shell("report")
