"""The skip ledger: on each kernel and tier, exactly which tests may skip,
and why; and how many tests must at least run.

A skip that is not listed here fails the tier (a feature probe that broke,
a missing tool, a fixture gone wrong would otherwise pass unnoticed); so
does a tier where fewer tests ran than it says. The check runs where the
whole tier runs (``FTT_LEDGER=1``: tests/run and the VM tier set it); a
run narrowed with ``-k`` only reports it.

Kernels: the development and CI host (6.18: no function tracing, no
kprobes, no hist triggers, no fprobes) and Debian's 6.1 and 6.12 under
QEMU (the VM tier runs the tests marked ``vm``).
"""

import os
import re
from typing import Dict, Optional, Tuple

__all__ = ["TIERS", "tier", "check"]

# tier -> {"skips": {test id: the start of the reason}, "min_run": N}
TIERS: Dict[str, Dict] = {
    "unit": {"skips": {}, "min_run": 770},
    # the development and CI host: function tracing forbidden (EPERM), no
    # kprobes, fprobes, hist triggers or function profiler, no
    # device-mapper (the bio-based device of biosnoop's and iolatency's dm
    # test: zram stands in for it here)
    "live 6.18": {"min_run": 258, "skips": {
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[EBUSY-funclatency]":
            "needs function",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[EINVAL-funclatency]":
            "needs function",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[ENOMEM-funclatency]":
            "needs function",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[EPERM-funclatency]":
            "needs function",
        "tests/live/test_torture_faults.py::test_no_space_for_the_journal[funclatency]":
            "needs function",
        "tests/live/test_torture_faults.py::test_offline_cpu[funclatency]":
            "needs function",
        "tests/live/test_torture_faults.py::test_pid_that_exits_during_setup[funclatency]":
            "needs function",
        "tests/live/test_torture_faults.py::test_trace_pipe_held_open_by_someone_else[funclatency]":
            "needs function",
        "tests/live/test_torture_signals.py::test_pipe_closed_by_head[funclatency]":
            "needs function",
        "tests/live/test_torture_signals.py::test_sigint_as_soon_as_tracing[funclatency]":
            "needs function",
        "tests/live/test_torture_signals.py::test_sigkill_at_random_moments[funclatency]":
            "needs function",
        "tests/live/test_torture_signals.py::test_signal_matrix[setup-funclatency]":
            "needs function",
        "tests/live/test_torture_signals.py::test_signal_matrix[streaming-funclatency]":
            "needs function",
        "tests/live/test_torture_signals.py::test_signal_matrix[teardown-funclatency]":
            "needs function",
        "tests/live/test_funclatency.py::test_every_call_counted_in_its_bucket[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funclatency.py::test_every_call_counted_in_its_bucket[kprobe-hist]":
            "needs kprobes",
        "tests/live/test_funclatency.py::test_every_call_counted_in_its_bucket[graph]":
            "needs function_graph",
        "tests/live/test_funclatency.py::test_slower_prints_exactly_the_slow_calls[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funclatency.py::test_slower_prints_exactly_the_slow_calls[kprobe-hist]":
            "needs kprobes",
        "tests/live/test_funclatency.py::test_slower_prints_exactly_the_slow_calls[graph]":
            "needs function_graph",
        "tests/live/test_funclatency.py::test_b_sizes_the_records_buffer[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funclatency.py::test_b_sizes_the_records_buffer[kprobe-hist]":
            "needs kprobes",
        "tests/live/test_funclatency.py::test_b_sizes_the_records_buffer[graph]":
            "needs function_graph",
        "tests/live/test_funclatency.py::test_errors_prints_the_calls_a_signal_cut_short[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funclatency.py::test_errors_prints_the_calls_a_signal_cut_short[kprobe-hist]":
            "needs kprobes",
        "tests/live/test_funclatency.py::test_errors_refused_where_no_return_values":
            "needs function_graph",
        "tests/live/test_cgroups.py::test_function_tools_count_the_calls_of_the_cgroup":
            "needs function",
        "tests/live/test_biosnoop.py::test_bio_based_device_counted_from_its_bio_events[dm]":
            "no device-mapper",
        "tests/live/test_funccount.py::test_command_and_thread":
            "needs function",
        "tests/live/test_funccount.py::test_cpu_filter_on_pinned_workloads[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funccount.py::test_cpu_filter_on_pinned_workloads[function]":
            "needs function_instance",
        "tests/live/test_funccount.py::test_cpu_filter_on_pinned_workloads[kprobe-hist]":
            "needs kprobes",
        "tests/live/test_funccount.py::test_exact_count_of_a_process[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funccount.py::test_exact_count_of_a_process[function]":
            "needs function_instance",
        "tests/live/test_funccount.py::test_exact_count_of_a_process[function-arrays]":
            "needs function_instance",
        "tests/live/test_funccount.py::test_exact_count_of_a_process[kprobe-hist]":
            "needs kprobes",
        "tests/live/test_funccount.py::test_exact_count_unfiltered[kprobe]":
            "needs kprobes",
        "tests/live/test_funccount.py::test_exact_count_unfiltered[profiler]":
            "needs function_profiler",
        "tests/live/test_funccount.py::test_intervals_sum_to_the_total":
            "needs function",
        "tests/live/test_funccount.py::test_list_and_suggestions":
            "needs function",
        "tests/live/test_funccount.py::test_tracepoints_counted_exactly[tp-hist]":
            "needs hist",
        "tests/live/test_funccount.py::test_stacks_add_up_to_the_counts[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funccount.py::test_stacks_add_up_to_the_counts[kprobe-hist]":
            "needs kprobes",
        "tests/live/test_funccount.py::test_stacks_add_up_to_the_counts[tp-hist]":
            "needs hist",
        "tests/live/test_funcgraph.py::test_folded_total_is_the_top_level_time":
            "needs function_graph",
        "tests/live/test_funcgraph.py::test_json_exact_calls_callees_and_durations":
            "needs function_graph",
        "tests/live/test_funcgraph.py::test_maxdepth_and_the_top_level_shared":
            "needs function_graph",
        "tests/live/test_funcgraph.py::test_same_tree_as_trace_cmd[records]":
            "needs function_graph",
        "tests/live/test_funcgraph.py::test_same_tree_as_trace_cmd[arrays]":
            "needs function_graph",
        "tests/live/test_iolatency.py::test_counts_every_io_exactly[kernel]":
            "needs hist",
        "tests/live/test_iolatency.py::test_in_kernel_histogram_matches_streaming":
            "needs hist",
        "tests/live/test_offcputime.py::test_kernel_tables_agree_with_the_stream":
            "needs hist_stacktrace",
        "tests/live/test_pagefaults.py::test_major_faults_match_kernel":
            "needs kprobes",
        "tests/live/test_schedtrace_kernel_hist.py::test_kernel_histogram_equals_stream_and_schedstat":
            "needs hist",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[EBUSY-funccount]":
            "needs function",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[EBUSY-funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[EINVAL-funccount]":
            "needs function",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[EINVAL-funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[ENOMEM-funccount]":
            "needs function",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[ENOMEM-funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[EPERM-funccount]":
            "needs function",
        "tests/live/test_torture_faults.py::test_every_setup_write_failing[EPERM-funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_faults.py::test_no_space_for_the_journal[funccount]":
            "needs function",
        "tests/live/test_torture_faults.py::test_no_space_for_the_journal[funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_faults.py::test_offline_cpu[funccount]":
            "needs function",
        "tests/live/test_torture_faults.py::test_offline_cpu[funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_faults.py::test_pid_that_exits_during_setup[funccount]":
            "needs function",
        "tests/live/test_torture_faults.py::test_pid_that_exits_during_setup[funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_faults.py::test_trace_pipe_held_open_by_someone_else[funccount]":
            "needs function",
        "tests/live/test_torture_faults.py::test_trace_pipe_held_open_by_someone_else[funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_neighbours.py::test_all_five_tools_beside_trace_cmd":
            "needs function",
        "tests/live/test_torture_signals.py::test_pipe_closed_by_head[funccount]":
            "needs function",
        "tests/live/test_torture_signals.py::test_pipe_closed_by_head[funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_signals.py::test_sigint_as_soon_as_tracing[funccount]":
            "needs function",
        "tests/live/test_torture_signals.py::test_sigint_as_soon_as_tracing[funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_signals.py::test_sigkill_at_random_moments[funccount]":
            "needs function",
        "tests/live/test_torture_signals.py::test_sigkill_at_random_moments[funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_signals.py::test_signal_matrix[setup-funccount]":
            "needs function",
        "tests/live/test_torture_signals.py::test_signal_matrix[setup-funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_signals.py::test_signal_matrix[streaming-funccount]":
            "needs function",
        "tests/live/test_torture_signals.py::test_signal_matrix[streaming-funcgraph]":
            "needs function_graph",
        "tests/live/test_torture_signals.py::test_signal_matrix[teardown-funccount]":
            "needs function",
        "tests/live/test_torture_signals.py::test_signal_matrix[teardown-funcgraph]":
            "needs function_graph",
        "tests/live/test_vm_canary.py::test_function_tracer_counts_getppid":
            "needs function_instance",
        "tests/live/test_vm_canary.py::test_hist_trigger_counts_getppid":
            "needs hist",
        "tests/live/test_vm_canary.py::test_kprobe_profile_counts_getppid":
            "needs kprobes",
    }},
    # Debian 12's 6.1: no fprobes (6.5+), no function profiler
    "vm 6.1": {"min_run": 75, "skips": {
        "tests/live/test_funclatency.py::test_every_call_counted_in_its_bucket[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funclatency.py::test_slower_prints_exactly_the_slow_calls[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funclatency.py::test_b_sizes_the_records_buffer[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funclatency.py::test_errors_prints_the_calls_a_signal_cut_short[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funccount.py::test_cpu_filter_on_pinned_workloads[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funccount.py::test_exact_count_of_a_process[fprobe-hist]":
            "needs fprobes",
        "tests/live/test_funccount.py::test_exact_count_unfiltered[profiler]":
            "needs function_profiler",
        "tests/live/test_funccount.py::test_stacks_add_up_to_the_counts[fprobe-hist]":
            "needs fprobes",
        # stacks in hist variables came in 6.5: the streaming path there
        "tests/live/test_offcputime.py::test_kernel_tables_agree_with_the_stream":
            "needs hist_stacktrace",
    }},
    # Debian 12's 6.12: no function profiler (CONFIG_FUNCTION_PROFILER off)
    "vm 6.12": {"min_run": 83, "skips": {
        "tests/live/test_funccount.py::test_exact_count_unfiltered[profiler]":
            "needs function_profiler",
    }},
}

def tier(args) -> Optional[str]:
    """This session's tier, from its paths and the kernel it runs on."""
    paths = " ".join(str(a) for a in args)
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    kernel = "%s.%s" % m.groups() if m else os.uname().release
    if "tests/unit" in paths and "tests/live" not in paths:
        return "unit"
    if os.environ.get("FTT_EMULATED") == "1":
        return "vm " + kernel
    return "live " + kernel


def check(name: Optional[str], ran: int,
          skipped: Dict[str, str]) -> Tuple[bool, list]:
    """(whether the tier holds to its ledger, lines to show)."""
    if name not in TIERS:
        return False, ["skip ledger: no entry for tier %r: add one to tests/ledger.py" % name]
    entry = TIERS[name]
    allowed = entry["skips"]
    lines, ok = [], True
    for test, why in sorted(skipped.items()):
        want = allowed.get(test)
        if want is None or not why.startswith(want):
            ok = False
            lines.append("skip ledger: UNEXPECTED skip %s: %s" % (test, why))
    if ran < entry["min_run"]:
        ok = False
        lines.append("skip ledger: only %d tests ran in %s, the ledger expects at least %d"
                     % (ran, name, entry["min_run"]))
    lines.append("skip ledger: %s: %d ran, %d skipped (%d allowed) -> %s" % (
        name, ran, len(skipped), len(allowed), "ok" if ok else "FAILED"))
    return ok, lines
