package tracer

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// faultSampler is one software page-fault perf event per CPU, each running
// the BPF program on every sample_period-th fault. Between samples only the
// kernel's own perf counter moves, so an unsampled fault costs a counter
// update and no BPF. This works on every architecture, unlike the x86-only
// exceptions:page_fault_user tracepoint, which would also run a program on
// every fault.
type faultSampler struct {
	fds []int
}

func openFaultSampler(prog *ebpf.Program, sampleBytes uint64) (*faultSampler, error) {
	period := sampleBytes / uint64(os.Getpagesize())
	if period == 0 {
		period = 1
	}
	cpus, err := onlineCPUs()
	if err != nil {
		return nil, err
	}
	fs := &faultSampler{}
	for _, cpu := range cpus {
		attr := unix.PerfEventAttr{
			Type:   unix.PERF_TYPE_SOFTWARE,
			Config: unix.PERF_COUNT_SW_PAGE_FAULTS,
			Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
			Sample: period,
			Bits:   unix.PerfBitDisabled,
		}
		fd, err := unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			err = errors.Join(err, fs.Close())
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("opening page-fault perf event on cpu %d: %w (needs CAP_PERFMON or kernel.perf_event_paranoid<=1)", cpu, err)
			}
			return nil, fmt.Errorf("opening page-fault perf event on cpu %d: %w", cpu, err)
		}
		fs.fds = append(fs.fds, fd)
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_SET_BPF, prog.FD()); err != nil {
			return nil, errors.Join(fmt.Errorf("attaching page-fault program on cpu %d: %w", cpu, err), fs.Close())
		}
		if err := unix.IoctlSetInt(fd, unix.PERF_EVENT_IOC_ENABLE, 0); err != nil {
			return nil, errors.Join(fmt.Errorf("enabling page-fault perf event on cpu %d: %w", cpu, err), fs.Close())
		}
	}
	return fs, nil
}

// Close detaches the program from every CPU.
func (fs *faultSampler) Close() error {
	var errs []error
	for _, fd := range fs.fds {
		errs = append(errs, unix.Close(fd))
	}
	fs.fds = nil
	return errors.Join(errs...)
}

func onlineCPUs() ([]int, error) {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, fmt.Errorf("reading online cpus: %w", err)
	}
	return parseCPUList(strings.TrimSpace(string(b)))
}

// parseCPUList parses the kernel's cpu list format, e.g. "0-3,5,7-8".
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		if a < 0 || b < a || b > 1<<16 {
			return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) == 0 {
		return nil, fmt.Errorf("cpu list %q is empty", s)
	}
	return cpus, nil
}
