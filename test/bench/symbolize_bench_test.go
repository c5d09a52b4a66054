package main

import (
	"io"
	"os"
	"os/exec"
	"testing"

	"github.com/leakwatch/leakwatch/pkg/symbolize"
)

// BenchmarkCaptureGoBinary is what the agent does when it first sees a
// process: Symbolizer.Capture, which loads the symbol tables of every
// executable file the process maps. The process is the Go toolchain's
// compiler (a large Go binary, as on a build node), waiting on its stdin;
// each iteration uses a fresh Symbolizer, so the tables are loaded anew.
// Run with -benchmem -memprofile to see where the agent's memory goes.
func BenchmarkCaptureGoBinary(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to read another process's maps")
	}
	tool, err := exec.Command(goTool(), "env", "GOTOOLDIR").Output()
	if err != nil {
		b.Fatal(err)
	}
	// `compile -` with no input waits on stdin: a live process mapping
	// the compiler binary.
	cmd := exec.Command(string(tool[:len(tool)-1])+"/compile", "-o", os.DevNull, "-p", "x", "/dev/stdin")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := uint32(cmd.Process.Pid)
	b.ReportAllocs()
	for b.Loop() {
		s, err := symbolize.New(symbolize.Config{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Capture(pid, 0); err != nil {
			b.Fatal(err)
		}
		_ = s.Close()
	}
}
