"""The delivery, control and workflow tests that cross service boundaries, run again with each
service in its own process talking gRPC (no hop collapsed, no shared pipeline), as production runs.
Their own modules run them with the services in one process; tests/processes.py starts these."""

from __future__ import annotations

from tests.processes import platforms
from tests.test_control import (  # noqa: F401 - collected here, with the split `platform`
    test_autoretry_for_retries_and_records_each_attempt,
    test_cancel_a_task_the_worker_holds_but_has_not_started,
    test_cancel_queued_and_delayed_tasks,
    test_cancel_running_task_cooperatively,
    test_cancel_running_task_stops_it_hard_after_the_grace_period,
    test_delay_longer_than_the_lease_runs_exactly_once,
    test_eta_is_held_on_the_server,
    test_exhausted_retries_go_to_dead_letters_and_can_be_requeued,
    test_expired_task_is_never_run,
    test_explain_covers_backoff_running_and_finished,
    test_explicit_retry_with_its_own_countdown,
    test_hard_time_limit_stops_the_task,
    test_pause_and_resume_a_queue,
    test_priority_is_strict_within_a_queue,
    test_rate_limit_is_shared_and_spaces_starts,
    test_submission_by_name_uses_the_retry_policy_declared_on_the_worker,
    test_workers_consume_only_their_queues,
)
from tests.test_delivery import (  # noqa: F401
    test_a_stopped_worker_drains_running_tasks_and_releases_the_rest,
    test_sigkilled_worker_task_is_redelivered_and_recorded_once,
)
from tests.test_workflows import (  # noqa: F401
    test_cancelling_a_step_stops_the_workflow,
    test_chain_passes_each_result_on,
    test_chain_through_a_group,
    test_chord_callback_carries_the_members_trace_contexts,
    test_chord_calls_its_body_with_the_list,
    test_each_stage_is_submitted_once,
    test_failure_stops_the_workflow_and_later_tasks_never_run,
    test_group_returns_results_in_order,
)

platform = platforms("split")
