package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, dashboardFile), &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardFile, err)
	}
	return d
}

func TestDashboardModel(t *testing.T) {
	d := loadDashboard(t)
	if d.Title == "" || d.UID == "" {
		t.Error("dashboard needs a title and a uid")
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	for name, typ := range map[string]string{"datasource": "datasource", "namespace": "query", "pod": "query", "container": "query"} {
		if vars[name] != typ {
			t.Errorf("template variable %s: type %q, want %q", name, vars[name], typ)
		}
	}
	titles := map[string]bool{}
	for _, p := range allPanels(d.Panels) {
		titles[p.Title] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the ${datasource} variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	for _, want := range []string{"Leaking containers", "Growth rate of the leak signal", "Time to memory limit",
		"Memory: leak signal, usage and limit", "OOM kills", "Agents up and ready", "Drops", "BPF map fill",
		"Errors", "Scrape and collection duration"} {
		if !titles[want] {
			t.Errorf("dashboard lacks the panel %q", want)
		}
	}
}

func allPanels(ps []panel) []panel {
	var all []panel
	for _, p := range ps {
		all = append(all, p)
		all = append(all, allPanels(p.Panels)...)
	}
	return all
}

// Grafana's variables, replaced by values PromQL accepts.
var (
	grafanaVar = regexp.MustCompile(`\$\{?(\w+)(?::\w+)?\}?`)
	varValues  = map[string]string{"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
	labelVals  = regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
)

// Every query of the dashboard, panels and variables, parses as PromQL:
// promtool checks them as recording rules of a temporary rules file.
func TestDashboardQueriesParse(t *testing.T) {
	tool := promtool(t)
	d := loadDashboard(t)
	var exprs []string
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		q, _ := v.Query.(map[string]any)
		if s, ok := q["query"].(string); ok && v.Type == "query" {
			m := labelVals.FindStringSubmatch(s)
			if m == nil {
				t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, s)
				continue
			}
			exprs = append(exprs, m[1])
		}
	}
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	for i, e := range exprs {
		e = grafanaVar.ReplaceAllStringFunc(e, func(m string) string {
			name := grafanaVar.FindStringSubmatch(m)[1]
			if v, ok := varValues[name]; ok {
				return v
			}
			return "x"
		})
		if strings.Contains(e, "$") {
			t.Errorf("query %d keeps a variable after substitution: %s", i, e)
		}
		rules = append(rules, rule{Record: fmt.Sprintf("leakwatch_dashboard:query_%d", i), Expr: e})
	}
	file := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}
	b, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, tool, "check", "rules", path)
	if want := fmt.Sprintf("%d rules found", len(rules)); !strings.Contains(string(out), want) {
		t.Errorf("promtool check rules: %s, want %q", out, want)
	}
}
