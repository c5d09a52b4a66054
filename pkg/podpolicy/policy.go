// Package podpolicy holds the per-workload settings a pod (or one of its
// containers) asks for through leakwatch.io/* annotations, and how they change
// the detector's configuration. It is plain data: the CRI client fetches the
// annotations, the agent applies the resulting Policy.
package podpolicy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/leakwatch/leakwatch/pkg/detect"
)

// Annotation keys, following the Kubernetes "domain/name" convention.
const (
	KeyIgnore      = "leakwatch.io/ignore"
	KeyWarmUp      = "leakwatch.io/warmup"
	KeySensitivity = "leakwatch.io/sensitivity"
)

// Sensitivity scales how much evidence the detector needs.
type Sensitivity string

const (
	SensitivityLow    Sensitivity = "low"
	SensitivityNormal Sensitivity = "normal"
	SensitivityHigh   Sensitivity = "high"
)

// Policy is what one container's annotations ask for. Invalid lists, "; "
// separated, the annotations whose values could not be used (they are
// ignored, never guessed at), so the caller can warn once and export it. A
// string keeps Policy comparable, like the cri.Info that carries it.
type Policy struct {
	Ignore      bool
	WarmUp      time.Duration // 0: the daemon's default
	Sensitivity Sensitivity
	Invalid     string
}

// Parse reads the pod's annotations, then the container's, which override
// the pod's key by key (container annotations are what CRI gives per
// container, so a sidecar can opt out without touching its pod).
func Parse(pod, container map[string]string) Policy {
	p := Policy{Sensitivity: SensitivityNormal}
	for _, a := range []map[string]string{pod, container} {
		p.merge(a)
	}
	return p
}

func (p *Policy) merge(a map[string]string) {
	if v, ok := a[KeyIgnore]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			p.invalid(KeyIgnore, v)
		} else {
			p.Ignore = b
		}
	}
	if v, ok := a[KeyWarmUp]; ok {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < 0 {
			p.invalid(KeyWarmUp, v)
		} else {
			p.WarmUp = d
		}
	}
	if v, ok := a[KeySensitivity]; ok {
		switch s := Sensitivity(strings.ToLower(strings.TrimSpace(v))); s {
		case SensitivityLow, SensitivityNormal, SensitivityHigh:
			p.Sensitivity = s
		default:
			p.invalid(KeySensitivity, v)
		}
	}
}

func (p *Policy) invalid(key, value string) {
	if p.Invalid != "" {
		p.Invalid += "; "
	}
	p.Invalid += fmt.Sprintf("%s=%q", key, value)
}

// Apply returns cfg changed as the policy asks. A warm-up annotation can only
// lengthen the warm-up: a pod must not be able to make the detector judge
// on fewer points than the operator configured. Sensitivity scales the
// growth floors and the significance the trend test must reach:
//
//	low:    MinGrowth and FastMinGrowth x4, Significance /10
//	normal: unchanged
//	high:   MinGrowth and FastMinGrowth /4, Significance x5 (at most 0.05)
func (p Policy) Apply(cfg detect.Config) detect.Config {
	if p.WarmUp > cfg.WarmUp {
		cfg.WarmUp = p.WarmUp
	}
	switch p.Sensitivity {
	case SensitivityLow:
		cfg.MinGrowth *= 4
		cfg.FastMinGrowth *= 4
		cfg.Significance /= 10
	case SensitivityHigh:
		cfg.MinGrowth /= 4
		cfg.FastMinGrowth /= 4
		cfg.Significance = min(cfg.Significance*5, 0.05)
	}
	return cfg
}
