package tasktide

import (
	"testing"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

func report(task string, token uint64, value float64) *pb.ProgressReport {
	return &pb.ProgressReport{Lease: &pb.LeaseRef{TaskId: task, LeaseToken: token}, Value: value}
}

func TestProgressBoxKeepsTheLatestReportOfEachAttempt(t *testing.T) {
	b := newProgressBox()
	for i := range 100_000 {
		b.put(report("a", 1, float64(i)))
	}
	b.put(report("a", 2, 7)) // another attempt of the same task
	b.put(report("b", 1, 3))
	if n := b.len(); n != 3 {
		t.Fatalf("%d reports wait, want 3 (one per attempt)", n)
	}
	got := map[progressKey]float64{}
	for _, r := range b.take() {
		got[keyOf(r)] = r.GetValue()
	}
	want := map[progressKey]float64{{"a", 1}: 99_999, {"a", 2}: 7, {"b", 1}: 3}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("attempt %v: got %v, want %v", k, got[k], v)
		}
	}
	if b.len() != 0 {
		t.Fatalf("take left %d reports", b.len())
	}
}

func TestProgressBoxPutBackKeepsANewerReport(t *testing.T) {
	b := newProgressBox()
	b.put(report("a", 1, 1))
	old := b.take()
	b.put(report("a", 1, 2)) // reported while the old one failed to be written
	b.putBack(old)
	rs := b.take()
	if len(rs) != 1 || rs[0].GetValue() != 2 {
		t.Fatalf("got %v, want the newer report only", rs)
	}
	b.putBack(old)
	if rs := b.take(); len(rs) != 1 || rs[0].GetValue() != 1 {
		t.Fatalf("got %v, want the report put back", rs)
	}
}
