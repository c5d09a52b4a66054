package tracer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/btf"
	"github.com/leakwatch/leakwatch/pkg/mountinfo"
	"golang.org/x/sys/unix"
)

// Requirement names a host capability the tracer cannot run without.
type Requirement string

const (
	RequirePrivileges  Requirement = "privileges"
	RequireBTF         Requirement = "btf"
	RequireLockdown    Requirement = "lockdown"
	RequireTracefs     Requirement = "tracefs"
	RequireTracepoints Requirement = "tracepoints"
	RequireLoad        Requirement = "load"
)

// HostError says what the host lacks and how to fix it. Callers can pick an
// exit code by its Requirement.
type HostError struct {
	Requirement Requirement
	Problem     string
	Fix         string
	Err         error
}

func (e *HostError) Error() string {
	msg := e.Problem
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Fix != "" {
		msg += " (fix: " + e.Fix + ")"
	}
	return msg
}

func (e *HostError) Unwrap() error { return e.Err }

// Capabilities are numbered here because x/sys/unix lacks the newer ones.
const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// Where the host says what it offers; variables so tests can point them at
// fixtures of hosts this machine is not.
var (
	btfPath      = "/sys/kernel/btf/vmlinux"
	lockdownPath = "/sys/kernel/security/lockdown"
)

// checkHost verifies, before anything is loaded, that this host can run the
// tracer, and mounts tracefs if nobody has. It returns the tracefs path.
func checkHost(procRoot string) (string, error) {
	if err := checkPrivileges(); err != nil {
		return "", err
	}
	if err := checkBTF(); err != nil {
		return "", err
	}
	if err := checkLockdown(); err != nil {
		return "", err
	}
	tracefs, err := ensureTracefs(procRoot)
	if err != nil {
		return "", err
	}
	var missing []string
	for _, tp := range new(leakwatchPrograms).tracepoints() {
		if _, err := os.Stat(filepath.Join(tracefs, "events", tp.group, tp.name)); err != nil {
			missing = append(missing, tp.group+":"+tp.name)
		}
	}
	if len(missing) > 0 {
		return "", &HostError{
			Requirement: RequireTracepoints,
			Problem:     fmt.Sprintf("tracepoints missing under %s: %s", tracefs, strings.Join(missing, ", ")),
			Fix:         "run a kernel built with CONFIG_FTRACE_SYSCALLS=y",
		}
	}
	return tracefs, nil
}

func checkBTF() error {
	if _, err := os.Stat(btfPath); err != nil {
		return &HostError{
			Requirement: RequireBTF,
			Problem:     "the kernel exposes no BTF type information (" + btfPath + ")",
			Fix:         "run a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.8 or later; most distributions since 2021)",
			Err:         err,
		}
	}
	if _, err := btf.LoadKernelSpec(); err != nil {
		return &HostError{
			Requirement: RequireBTF,
			Problem:     "the kernel's BTF type information (" + btfPath + ") cannot be read",
			Fix:         "run a kernel built with CONFIG_DEBUG_INFO_BTF=y (5.8 or later; most distributions since 2021)",
			Err:         err,
		}
	}
	return nil
}

// checkLockdown refuses confidentiality lockdown, which forbids BPF
// programs from reading kernel memory; integrity mode is fine.
func checkLockdown() error {
	mode, err := os.ReadFile(lockdownPath)
	if err != nil || !strings.Contains(string(mode), "[confidentiality]") {
		return nil
	}
	return &HostError{
		Requirement: RequireLockdown,
		Problem:     "kernel lockdown is in confidentiality mode, which forbids BPF programs from reading kernel memory",
		Fix:         "boot with lockdown=integrity or none (or disable Secure Boot's lockdown) on nodes that run leakwatch",
	}
}

func checkPrivileges() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return &HostError{Requirement: RequirePrivileges, Problem: "reading own capabilities", Err: err}
	}
	has := func(c uint) bool { return data[c/32].Effective&(1<<(c%32)) != 0 }
	if has(capSysAdmin) || (has(capBPF) && has(capPerfmon)) {
		return nil
	}
	return &HostError{
		Requirement: RequirePrivileges,
		Problem:     "missing privileges to load BPF programs and open perf events",
		Fix:         "run as root, or grant CAP_BPF and CAP_PERFMON (plus CAP_SYS_PTRACE to read other processes' memory maps)",
	}
}

// ensureTracefs finds tracefs, mounting it at /sys/kernel/tracing when the
// host has not: minimal images and fresh VMs often lack the mount, while the
// kernel always has the filesystem.
func ensureTracefs(procRoot string) (string, error) {
	if p, ok := findTracefs(filepath.Join(procRoot, "self", "mountinfo")); ok {
		return p, nil
	}
	const mountpoint = "/sys/kernel/tracing"
	if err := unix.Mount("tracefs", mountpoint, "tracefs", 0, ""); err != nil {
		return "", &HostError{
			Requirement: RequireTracefs,
			Problem:     "tracefs is not mounted and mounting it at " + mountpoint + " failed",
			Fix:         "mount it with `mount -t tracefs tracefs /sys/kernel/tracing` (in Kubernetes, mount the host's /sys/kernel/tracing into the pod)",
			Err:         err,
		}
	}
	return mountpoint, nil
}

// findTracefs returns the mount point of tracefs, or of debugfs' tracing
// directory, from a mountinfo file.
func findTracefs(path string) (string, bool) {
	mounts, err := mountinfo.Read(path)
	if err != nil {
		return "", false
	}
	var debugfs string
	for _, m := range mounts {
		switch m.FSType {
		case "tracefs":
			return m.Point, true
		case "debugfs":
			debugfs = m.Point
		}
	}
	if debugfs != "" {
		p := filepath.Join(debugfs, "tracing")
		if _, err := os.Stat(filepath.Join(p, "events")); err == nil {
			return p, true
		}
	}
	return "", false
}

var errClosed = errors.New("tracer closed")
