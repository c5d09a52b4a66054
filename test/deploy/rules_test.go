package deploy

import (
	"bytes"
	"reflect"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

const (
	rulesFile     = "deploy/prometheus/rules.yaml"
	rulesTests    = "deploy/prometheus/tests/leakwatch_test.yaml"
	dashboardFile = "deploy/grafana/leakwatch.json"
	regenerate    = "run hack/gen-deploy.sh"
)

// The alerts the issue asks for; every one has a runbook and a promtool test.
var wantAlerts = []string{
	"LeakwatchContainerLeaking",
	"LeakwatchContainerMemoryLimitSoon",
	"LeakwatchContainerOOMKilled",
	"LeakwatchDrops",
	"LeakwatchBPFMapNearlyFull",
	"LeakwatchErrors",
	"LeakwatchNotReady",
	"LeakwatchAgentDown",
	"LeakwatchScrapeSlow",
}

func TestPromtoolCheckRules(t *testing.T) {
	run(t, promtool(t), "check", "rules", rulesFile)
}

func TestPromtoolTestRules(t *testing.T) {
	run(t, promtool(t), "test", "rules", rulesTests)
}

// rulesSpec decodes the rules file strictly into the PrometheusRule spec
// type, which holds the same groups.
func rulesSpec(t *testing.T) monitoringv1.PrometheusRuleSpec {
	t.Helper()
	var spec monitoringv1.PrometheusRuleSpec
	if err := yaml.UnmarshalStrict(readFile(t, rulesFile), &spec); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	return spec
}

// Every alert is there, with a summary, a description, a runbook_url that
// names a runbook in docs/runbooks, a severity, and a promtool test.
func TestRulesAnnotated(t *testing.T) {
	spec := rulesSpec(t)
	tests := readFile(t, rulesTests)
	got := map[string]bool{}
	for _, g := range spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			got[r.Alert] = true
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("alert %s has no %s annotation", r.Alert, a)
				}
			}
			want := "https://github.com/leakwatch/leakwatch/blob/main/docs/runbooks/" + r.Alert + ".md"
			if r.Annotations["runbook_url"] != want {
				t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			readFile(t, "docs", "runbooks", r.Alert+".md")
			if r.Labels["severity"] == "" {
				t.Errorf("alert %s has no severity label", r.Alert)
			}
			if !bytes.Contains(tests, []byte("alertname: "+r.Alert+"\n")) {
				t.Errorf("alert %s has no test in %s", r.Alert, rulesTests)
			}
		}
	}
	for _, a := range wantAlerts {
		if !got[a] {
			t.Errorf("alert %s missing from %s", a, rulesFile)
		}
	}
}

// The rules and the dashboard have one source each; the manifests and the
// chart embed copies that hack/gen-deploy.sh keeps.
func TestEmbeddedCopiesMatchSources(t *testing.T) {
	rules := readFile(t, rulesFile)
	dashboard := readFile(t, dashboardFile)
	if !bytes.Equal(readFile(t, "deploy/helm/leakwatch/files/rules.yaml"), rules) {
		t.Errorf("deploy/helm/leakwatch/files/rules.yaml differs from %s; %s", rulesFile, regenerate)
	}
	if !bytes.Equal(readFile(t, "deploy/helm/leakwatch/files/leakwatch.json"), dashboard) {
		t.Errorf("deploy/helm/leakwatch/files/leakwatch.json differs from %s; %s", dashboardFile, regenerate)
	}

	objs := manifests(t)
	rule, ok := objs["PrometheusRule/leakwatch"].(*monitoringv1.PrometheusRule)
	if !ok {
		t.Fatal("deploy/kubernetes has no PrometheusRule leakwatch")
	}
	if want := rulesSpec(t); !reflect.DeepEqual(rule.Spec, want) {
		t.Errorf("the PrometheusRule in deploy/kubernetes differs from %s; %s", rulesFile, regenerate)
	}
	cm, ok := objs["ConfigMap/leakwatch-dashboard"]
	if !ok {
		t.Fatal("deploy/kubernetes has no ConfigMap leakwatch-dashboard")
	}
	if got := configMapData(cm)["leakwatch.json"]; got != string(bytes.TrimRight(dashboard, "\n")) {
		t.Errorf("the dashboard ConfigMap in deploy/kubernetes differs from %s; %s", dashboardFile, regenerate)
	}
}
