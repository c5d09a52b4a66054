package tracer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Hosts this machine is not: no BTF, lockdown in each mode. The checks read
// the files a real kernel offers, pointed here at fixtures.
func TestPreflightNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	oldBTF, oldLockdown := btfPath, lockdownPath
	t.Cleanup(func() { btfPath, lockdownPath = oldBTF, oldLockdown })

	btfPath = filepath.Join(dir, "no-such-vmlinux")
	var host *HostError
	if err := checkBTF(); !errors.As(err, &host) || host.Requirement != RequireBTF ||
		!strings.Contains(err.Error(), "CONFIG_DEBUG_INFO_BTF") {
		t.Errorf("no BTF: %v; want a HostError for btf saying how to fix it", err)
	}

	for mode, refused := range map[string]bool{
		"[none] integrity confidentiality\n": false,
		"none [integrity] confidentiality\n": false,
		"none integrity [confidentiality]\n": true,
	} {
		lockdownPath = filepath.Join(dir, "lockdown")
		if err := os.WriteFile(lockdownPath, []byte(mode), 0o644); err != nil {
			t.Fatal(err)
		}
		err := checkLockdown()
		if got := errors.As(err, &host) && host.Requirement == RequireLockdown; got != refused {
			t.Errorf("lockdown %q: %v, want refused=%v", strings.TrimSpace(mode), err, refused)
		}
	}
	lockdownPath = filepath.Join(dir, "no-lockdown-file") // kernels without the LSM
	if err := checkLockdown(); err != nil {
		t.Errorf("no lockdown file: %v, want nil", err)
	}
}
