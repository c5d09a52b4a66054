package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// memHierarchy is where this process's memory cgroup is: the mount of the
// hierarchy with the memory controller, and the cgroup's path in it.
type memHierarchy struct {
	mount, own string
	v2         bool
}

func ownMemoryCgroup() (memHierarchy, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return memHierarchy{}, err
	}
	var unified string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			unified = parts[2]
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			if c == "memory" {
				return memHierarchy{mount: "/sys/fs/cgroup/memory", own: parts[2]}, nil
			}
		}
	}
	if unified != "" {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
			return memHierarchy{mount: "/sys/fs/cgroup", own: unified, v2: true}, nil
		}
	}
	return memHierarchy{}, errors.New("no memory cgroup found in /proc/self/cgroup")
}

// benchCgroup is a memory cgroup made beneath our own, holding at most one
// workload process, which is ended by its pid.
type benchCgroup struct {
	dir   string // absolute directory
	rel   string // path in the hierarchy, as the agent names it
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
}

var cgroupSeq int

// newCgroup makes a cgroup with a memory limit.
func (h memHierarchy) newCgroup(limit uint64) (*benchCgroup, error) {
	cgroupSeq++
	name := fmt.Sprintf("leakwatch-bench-%d-%d", os.Getpid(), cgroupSeq)
	c := &benchCgroup{dir: filepath.Join(h.mount, h.own, name), rel: filepath.Join(h.own, name)}
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("making cgroup: %w", err)
	}
	file, val := "memory.limit_in_bytes", strconv.FormatUint(limit, 10)
	if h.v2 {
		file = "memory.max"
	}
	if err := os.WriteFile(filepath.Join(c.dir, file), []byte(val), 0o644); err != nil {
		_ = os.Remove(c.dir)
		return nil, fmt.Errorf("setting %s: %w", file, err)
	}
	return c, nil
}

// start runs `loops ARGS...` (hold or stacks) in the cgroup: the process is
// moved in before it maps anything, and start returns once it has.
func (c *benchCgroup) start(bin string, args ...string) error {
	c.cmd = exec.Command(bin, args...)
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		return err
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := c.cmd.Start(); err != nil {
		return err
	}
	c.done = make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	pid := strconv.Itoa(c.cmd.Process.Pid)
	if err := os.WriteFile(filepath.Join(c.dir, "cgroup.procs"), []byte(pid), 0o644); err != nil {
		c.stop()
		return fmt.Errorf("moving %s into %s: %w", pid, c.dir, err)
	}
	if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
		c.stop()
		return err
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("workload said %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(30 * time.Second):
		err = errors.New("workload not ready within 30s")
	}
	if err != nil {
		c.stop()
	}
	return err
}

// stop ends the workload (closing its stdin, then SIGKILL by pid after 5 s)
// and removes the cgroup, retrying while the kernel still counts the
// process as a member, for at most 5 s.
func (c *benchCgroup) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.stdin.Close()
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
			<-c.done
		}
		c.cmd = nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := os.Remove(c.dir)
		if err == nil || errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(os.Stderr, "bench: cgroup %s left behind: %v\n", c.dir, err)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopAll ends the workloads and removes the cgroups, ending all processes
// first so that their exits overlap.
func stopAll(cgs []*benchCgroup) {
	for _, c := range cgs {
		if c.cmd != nil {
			_ = c.stdin.Close()
		}
	}
	for _, c := range cgs {
		c.stop()
	}
}
