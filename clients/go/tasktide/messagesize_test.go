package tasktide_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
)

// A scheduler that takes messages of 64 KiB at most, and announces it, gets batches under that
// size: goroutines submitting tasks of about 20 KiB at once are all answered (a message of four
// of them, under the client's own 1 MiB bound, would end the stream with RESOURCE_EXHAUSTED and
// fail every submission it carried).
func TestBatchesStayUnderTheMessageSizeTheSchedulerAnnounced(t *testing.T) {
	const limit = 64 << 10
	b := &batchScheduler{announce: "1000", size: "65536"}
	burst(t, serveScheduler(t, b, grpc.MaxRecvMsgSize(limit)), 100, strings.Repeat("x", 20_000))
	most := 0
	for _, n := range b.perMessage() {
		most = max(most, n)
	}
	if most < 2 {
		t.Fatalf("no message carried several submissions: the test shows nothing")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.largestBatch > limit {
		t.Fatalf("a message of %d bytes; the scheduler takes %d", b.largestBatch, limit)
	}
}

// A size that is not a decimal number is ignored: the client keeps its own bound (1 MiB), rather
// than reading 65536 out of "65536 bytes".
func TestAMalformedMessageSizeLeavesTheClientsBound(t *testing.T) {
	b := &batchScheduler{announce: "1000", size: "65536 bytes"}
	burst(t, serveScheduler(t, b), 100, strings.Repeat("x", 20_000))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.largestBatch <= 64<<10 || b.largestBatch > 1<<20 {
		t.Fatalf("the largest message of several took %d bytes; want over 64 KiB, at most 1 MiB", b.largestBatch)
	}
}
