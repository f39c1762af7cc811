package tasktide

import pb "github.com/tasktide/tasktide/clients/go/tasktidepb"

// State is the state of a task.
type State int32

// Task states, with the values of the protocol's TaskState enum.
const (
	StateUnknown   State = State(pb.TaskState_TASK_STATE_UNSPECIFIED)
	StateScheduled State = State(pb.TaskState_TASK_STATE_SCHEDULED)
	StateQueued    State = State(pb.TaskState_TASK_STATE_QUEUED)
	StateRunning   State = State(pb.TaskState_TASK_STATE_RUNNING)
	StateRetrying  State = State(pb.TaskState_TASK_STATE_RETRYING)
	StateSucceeded State = State(pb.TaskState_TASK_STATE_SUCCEEDED)
	StateFailed    State = State(pb.TaskState_TASK_STATE_FAILED)
	StateCancelled State = State(pb.TaskState_TASK_STATE_CANCELLED)
	StateExpired   State = State(pb.TaskState_TASK_STATE_EXPIRED)
	StateDead      State = State(pb.TaskState_TASK_STATE_DEAD)
)

var stateNames = map[State]string{
	StateUnknown: "UNKNOWN", StateScheduled: "SCHEDULED", StateQueued: "QUEUED",
	StateRunning: "RUNNING", StateRetrying: "RETRYING", StateSucceeded: "SUCCEEDED",
	StateFailed: "FAILED", StateCancelled: "CANCELLED", StateExpired: "EXPIRED", StateDead: "DEAD",
}

func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return "UNKNOWN"
}

// Final reports whether the task will not change state again (short of a dead task requeued).
func (s State) Final() bool {
	switch s {
	case StateSucceeded, StateFailed, StateCancelled, StateExpired, StateDead:
		return true
	}
	return false
}
