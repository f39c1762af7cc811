package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// cpuMeter adds up the CPU seconds used so far by this process, the tasktide server (when its pid
// is given) and the Redis server (INFO cpu): figures that, unlike wall time, other programs
// running on the machine barely change.
type cpuMeter struct {
	serverPid int
	redis     *redis.Client
}

func (m cpuMeter) seconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	total := tv(ru.Utime) + tv(ru.Stime)
	if m.serverPid > 0 {
		total += procSeconds(m.serverPid)
	}
	info, err := m.redis.Info(context.Background(), "cpu").Result()
	if err == nil {
		for _, line := range strings.Split(info, "\r\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
	}
	return total
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// procSeconds is the user and system CPU time of a process and of its child processes (a server
// that runs as several processes).
func procSeconds(pid int) float64 {
	entries, _ := os.ReadDir("/proc")
	var ticks float64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if e.Name() != strconv.Itoa(pid) && fields[1] != strconv.Itoa(pid) { // fields[1]: the parent
			continue
		}
		for _, i := range []int{11, 12} { // utime, stime (fields 14 and 15 of the whole line)
			f, _ := strconv.ParseFloat(fields[i], 64)
			ticks += f
		}
	}
	return ticks / 100 // USER_HZ
}
