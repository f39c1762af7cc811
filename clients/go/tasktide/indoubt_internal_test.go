package tasktide

import (
	"testing"
	"time"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

func outcome(id string, token uint64) *pb.Outcome {
	return &pb.Outcome{TaskId: id, LeaseToken: token}
}

func ids(batch []*pb.Outcome) []string {
	out := make([]string, len(batch))
	for i, o := range batch {
		out[i] = o.GetTaskId()
	}
	return out
}

func TestInDoubtKeepsTheOutcomesOfTheLastLease(t *testing.T) {
	d := newInDoubt(maxInDoubt)
	t0 := time.Now()
	d.written([]*pb.Outcome{outcome("a", 1)}, t0)
	d.written([]*pb.Outcome{outcome("b", 2), outcome("c", 3)}, t0.Add(20*time.Second))
	got := ids(d.take(30*time.Second, t0.Add(40*time.Second)))
	if len(got) != 2 || got[0] != "b" || got[1] != "c" {
		t.Fatalf("within the lease: got %v, want [b c]", got)
	}
	if !d.wasResent(&pb.LeaseRef{TaskId: "b", LeaseToken: 2}) || d.wasResent(&pb.LeaseRef{TaskId: "b", LeaseToken: 9}) {
		t.Fatal("wasResent must match the task and its lease token")
	}
	// kept until the lease passes: a session lost again sends them again
	if got := ids(d.take(30*time.Second, t0.Add(45*time.Second))); len(got) != 2 {
		t.Fatalf("taken again: got %v", got)
	}
	if got := d.take(30*time.Second, t0.Add(51*time.Second)); len(got) != 0 {
		t.Fatalf("after the lease: got %v, want none", ids(got))
	}
	if d.wasResent(&pb.LeaseRef{TaskId: "b", LeaseToken: 2}) {
		t.Fatal("a later take forgets what the earlier one sent")
	}
}

func TestInDoubtIsBounded(t *testing.T) {
	d := newInDoubt(3)
	now := time.Now()
	for i := range 5 {
		d.written([]*pb.Outcome{outcome(string(rune('a'+i)), uint64(i))}, now)
	}
	if got := ids(d.take(time.Minute, now)); len(got) != 3 || got[0] != "c" || got[2] != "e" {
		t.Fatalf("got %v, want the newest three", got)
	}
}
