package main

import (
	"fmt"
	"net"

	"github.com/redis/go-redis/v9"
	pb "github.com/tasktide/tasktide/clients/go/tasktidepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// floorScheduler is the floor of a confirmed submission in Go, the counterpart of
// bench/onebyone.py's Python floor: a SubmitStream that answers each message at once, or after
// one two-command Redis pipeline (redisURL set). No admission, no scheduler.
type floorScheduler struct {
	pb.UnimplementedSchedulerServer
	rdb *redis.Client
}

var floorAnswer = &pb.SubmitResponse{TaskId: "00000000000000000000000000000000"}

func (f *floorScheduler) SubmitStream(s grpc.BidiStreamingServer[pb.SubmitStreamRequest, pb.SubmitStreamResponse]) error {
	if err := s.SendHeader(metadata.Pairs("tasktide-submit-batch", "1000")); err != nil {
		return err
	}
	ctx := s.Context()
	for {
		req, err := s.Recv()
		if err != nil {
			return nil // the client ended the stream
		}
		entries := req.GetBatch()
		if len(entries) == 0 {
			entries = []*pb.SubmitStreamRequest{req}
		}
		if f.rdb != nil {
			pipe := f.rdb.Pipeline()
			pipe.Set(ctx, "floor", "1", 0)
			pipe.SAdd(ctx, "floor:set", "1")
			if _, err := pipe.Exec(ctx); err != nil {
				return err
			}
		}
		answers := make([]*pb.SubmitStreamResponse, len(entries))
		for i, e := range entries {
			answers[i] = &pb.SubmitStreamResponse{Seq: e.GetSeq(), Result: floorAnswer}
		}
		resp := answers[0]
		if len(answers) > 1 {
			resp = &pb.SubmitStreamResponse{Batch: answers}
		}
		if err := s.Send(resp); err != nil {
			return err
		}
	}
}

// serveFloor serves floorScheduler on 127.0.0.1:port until the process is stopped.
func serveFloor(port int, redisURL string) error {
	f := &floorScheduler{}
	if redisURL != "" {
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			return err
		}
		f.rdb = redis.NewClient(opt)
	}
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	pb.RegisterSchedulerServer(srv, f)
	return srv.Serve(lis)
}
