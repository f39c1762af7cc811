package tasktide

import (
	"testing"

	"google.golang.org/grpc/metadata"

	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
)

// A message takes what is queued, in order, up to what the scheduler announced and what a
// message may weigh; a submission heavier than that alone still goes, by itself.
func TestAMessageTakesNoMoreThanTheAnnouncedCountAndTheSizeLimit(t *testing.T) {
	st := newOpenStream(nil, nil)
	queue := func(sizes ...int) {
		for _, size := range sizes {
			st.queue = append(st.queue, queued{req: &pb.SubmitStreamRequest{Seq: uint64(len(st.queue) + 1)}, size: size})
		}
	}
	seqs := func(batch []*pb.SubmitStreamRequest) []uint64 {
		out := make([]uint64, len(batch))
		for i, r := range batch {
			out[i] = r.GetSeq()
		}
		return out
	}
	if got := seqs(st.take()); len(got) != 0 {
		t.Fatalf("an empty queue gave %v", got)
	}
	queue(10, 10, 10)
	if got := seqs(st.take()); len(got) != 1 || got[0] != 1 {
		t.Fatalf("before the scheduler announced batches: %v; want [1]", got)
	}
	st.perMessage.Store(1000)
	if got := seqs(st.take()); len(got) != 2 || got[0] != 2 || len(st.queue) != 0 {
		t.Fatalf("after: %v (queue %d); want [2 3]", got, len(st.queue))
	}
	st.queue = nil
	quarter := maxBatchBytes / 4
	queue(make([]int, 40)...)
	for i := range st.queue {
		st.queue[i].size = quarter
	}
	first := st.take()
	if len(first) != 4 || first[0].GetSeq() != 1 {
		t.Fatalf("40 submissions of a quarter of the batch limit: the first message took %d; want 4", len(first))
	}
	st.queue = nil
	queue(maxBatchBytes+1, 10)
	if got := seqs(st.take()); len(got) != 1 || got[0] != 1 {
		t.Fatalf("a submission over the limit went with others: %v", got)
	}
	st.queue = nil
	st.perMessage.Store(3)
	queue(10, 10, 10, 10, 10)
	if got := seqs(st.take()); len(got) != 3 || len(st.queue) != 2 {
		t.Fatalf("announced 3: %v, %d left", got, len(st.queue))
	}
}

// headerOnly is a SubmitStream call whose initial metadata is md.
type headerOnly struct {
	pb.Scheduler_SubmitStreamClient
	md metadata.MD
}

func (h headerOnly) Header() (metadata.MD, error) { return h.md, nil }

// What the scheduler announces is read within the client's bounds; a value that is not a decimal
// number (a sign, a unit, a space, another script's digits) is ignored, as if not announced.
func TestTheAnnouncementIsReadWithinTheClientsBounds(t *testing.T) {
	cases := []struct {
		batch, size     string
		perMessage, max int32
	}{
		{"", "", 1, maxBatchBytes},
		{"7", "65536", 7, 65536},
		{"5000", "99999999999999999999999", maxPerMessage, maxBatchBytes},
		{"+7", "+65536", 1, maxBatchBytes},
		{"-7", "-65536", 1, maxBatchBytes},
		{"7 ", "65536 bytes", 1, maxBatchBytes},
		{"0x10", "0x10000", 1, maxBatchBytes},
		{"７", "６５５３６", 1, maxBatchBytes},
		{"0", "0", 1, maxBatchBytes},
	}
	for _, c := range cases {
		md := metadata.MD{}
		if c.batch != "" {
			md.Set(batchHeader, c.batch)
		}
		if c.size != "" {
			md.Set(bytesHeader, c.size)
		}
		st := newOpenStream(headerOnly{md: md}, nil)
		st.announced()
		if got, most := st.perMessage.Load(), st.batchBytes.Load(); got != c.perMessage || most != c.max {
			t.Errorf("announced %q and %q: read %d submissions of %d bytes; want %d of %d", c.batch, c.size, got, most, c.perMessage, c.max)
		}
	}
}
