package tasktide_test

// TestMain gives the tests a platform when none is named: without TASKTIDE_ADDRESS it starts
// `tasktide dev` (embedded Redis, port 0, the address read from the line it prints) and a Python
// worker for tests.tasks_app:app on a fresh queue (TASKTIDE_TEST_PYTHON_QUEUE), and stops both at
// the end. So `go test ./...` run alone tests against real services instead of skipping.
// The Python interpreter is $TASKTIDE_PYTHON, else the repository's .venv, else python3.

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv("TASKTIDE_ADDRESS") != "" {
		os.Exit(m.Run())
	}
	stop, err := startPlatform()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting a platform for the tests:", err)
		os.Exit(2)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

var listening = regexp.MustCompile(`listening on (\S+:\d+)`)

func repoRoot() (string, error) {
	wd, err := os.Getwd() // clients/go/tasktide while tests run
	if err != nil {
		return "", err
	}
	return filepath.Abs(filepath.Join(wd, "..", "..", ".."))
}

func python(root string) string {
	if p := os.Getenv("TASKTIDE_PYTHON"); p != "" {
		return p
	}
	if venv := filepath.Join(root, ".venv", "bin", "python"); fileExists(venv) {
		return venv
	}
	return "python3"
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func startPlatform() (func(), error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	data, err := os.MkdirTemp("", "tasktide-go-test-")
	if err != nil {
		return nil, err
	}
	py := python(root)
	env := append(os.Environ(), "TASKTIDE_REDIS_URL=", "TASKTIDE_LEASE_SECONDS=3")
	dev := exec.Command(py, "-m", "tasktide.cli", "dev", "--address", "127.0.0.1:0", "--data-dir", data)
	dev.Dir, dev.Env, dev.Stderr = root, env, os.Stderr
	out, err := dev.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := dev.Start(); err != nil {
		return nil, err
	}
	stopDev := func() { stopProcess(dev); _ = os.RemoveAll(data) }
	address := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			if m := listening.FindStringSubmatch(lines.Text()); m != nil {
				address <- m[1]
				break
			}
		}
		for lines.Scan() { // keep the pipe drained
		}
		close(address)
	}()
	var addr string
	select {
	case a, ok := <-address:
		if !ok {
			stopDev()
			return nil, fmt.Errorf("%s -m tasktide.cli dev exited before listening", py)
		}
		addr = a
	case <-time.After(60 * time.Second):
		stopDev()
		return nil, fmt.Errorf("%s -m tasktide.cli dev did not listen within 60 s", py)
	}
	var b [5]byte
	_, _ = rand.Read(b[:])
	queue := "go-python-" + hex.EncodeToString(b[:])
	worker := exec.Command(py, "-m", "tasktide.cli", "worker", "tests.tasks_app:app", "--queues", queue)
	worker.Dir, worker.Stdout, worker.Stderr = root, os.Stderr, os.Stderr
	worker.Env = append(env, "TASKTIDE_ADDRESS="+addr)
	if err := worker.Start(); err != nil {
		stopDev()
		return nil, err
	}
	os.Setenv("TASKTIDE_ADDRESS", addr)
	os.Setenv("TASKTIDE_TEST_PYTHON_QUEUE", queue)
	return func() { stopProcess(worker); stopDev() }, nil
}

// stopProcess asks for a drain (SIGTERM) and kills the process if it has not ended after 20 s.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
