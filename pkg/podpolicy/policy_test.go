package podpolicy

import (
	"testing"
	"time"

	"github.com/leakwatch/leakwatch/pkg/detect"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name           string
		pod, container map[string]string
		want           Policy
	}{
		{"none", nil, nil, Policy{Sensitivity: SensitivityNormal}},
		{"pod", map[string]string{KeyIgnore: "true", KeyWarmUp: "30m", KeySensitivity: "High"}, nil,
			Policy{Ignore: true, WarmUp: 30 * time.Minute, Sensitivity: SensitivityHigh}},
		{"container overrides pod", map[string]string{KeyIgnore: "true", KeySensitivity: "low"},
			map[string]string{KeyIgnore: "false"},
			Policy{Ignore: false, Sensitivity: SensitivityLow}},
		{"bad values ignored and reported", map[string]string{KeyIgnore: "yes please", KeyWarmUp: "-1m", KeySensitivity: "max"}, nil,
			Policy{Sensitivity: SensitivityNormal, Invalid: `leakwatch.io/ignore="yes please"; leakwatch.io/warmup="-1m"; leakwatch.io/sensitivity="max"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Parse(c.pod, c.container)
			if got != c.want {
				t.Fatalf("Parse = %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestApply(t *testing.T) {
	base := detect.DefaultConfig()
	short := Policy{WarmUp: time.Second, Sensitivity: SensitivityNormal}.Apply(base)
	if short != base {
		t.Errorf("a shorter warm-up than configured changed the config: %+v", short)
	}
	long := Policy{WarmUp: time.Hour, Sensitivity: SensitivityNormal}.Apply(base)
	if long.WarmUp != time.Hour {
		t.Errorf("warm-up %v, want 1h", long.WarmUp)
	}
	low := Policy{Sensitivity: SensitivityLow}.Apply(base)
	high := Policy{Sensitivity: SensitivityHigh}.Apply(base)
	if !(low.MinGrowth > base.MinGrowth && high.MinGrowth < base.MinGrowth) ||
		!(low.Significance < base.Significance && high.Significance > base.Significance) {
		t.Errorf("sensitivity not monotone: low %+v high %+v", low, high)
	}
	for _, c := range []detect.Config{long, low, high} {
		if err := c.Validate(); err != nil {
			t.Errorf("applied config invalid: %v", err)
		}
	}
}
