package tasktide

import (
	"fmt"
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
	d.written([]*pb.Outcome{outcome("a", 1)}, 30*time.Second, t0)
	d.written([]*pb.Outcome{outcome("b", 2), outcome("c", 3)}, 30*time.Second, t0.Add(20*time.Second))
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
		d.written([]*pb.Outcome{outcome(string(rune('a'+i)), uint64(i))}, time.Minute, now)
	}
	if got := ids(d.take(time.Minute, now)); len(got) != 3 || got[0] != "c" || got[2] != "e" {
		t.Fatalf("got %v, want the newest three", got)
	}
}

func TestInDoubtLetsGoOfOutcomesOlderThanTheLeaseAsItWrites(t *testing.T) {
	d := newInDoubt(maxInDoubt)
	t0 := time.Now()
	for i := range 100 {
		d.written([]*pb.Outcome{outcome(fmt.Sprint(i), 1)}, 30*time.Second, t0)
	}
	d.written([]*pb.Outcome{outcome("late", 1)}, 30*time.Second, t0.Add(31*time.Second))
	if got := d.size(); got != 1 {
		t.Fatalf("kept %d outcomes, want only the one of the last lease", got)
	}
}

func TestInDoubtWritesWithoutCopyingWhatItKeeps(t *testing.T) {
	d := newInDoubt(1000)
	now := time.Now()
	batch := []*pb.Outcome{outcome("x", 1)}
	for range 5000 { // at its limit, with room made by the compactions
		d.written(batch, time.Minute, now)
	}
	// Letting go of the oldest outcome must not copy the thousand kept (which allocated a new
	// slice for every outcome written once the limit was reached).
	if allocs := testing.AllocsPerRun(2000, func() { d.written(batch, time.Minute, now) }); allocs != 0 {
		t.Fatalf("%v allocations per outcome written at the limit, want 0", allocs)
	}
	if got := d.size(); got != 1000 {
		t.Fatalf("kept %d, want the limit", got)
	}
}
