package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/leakwatch/leakwatch/pkg/detect"
)

type analyzeConfig struct {
	Detect detect.Config
	Files  []string
}

func (c analyzeConfig) Validate() error {
	if len(c.Files) == 0 {
		return errors.New("no FILE given; pass one or more CSV files with columns t,bytes[,limit]")
	}
	return c.Detect.Validate()
}

// errSomeFailed reports that at least one file could not be analysed; each
// was already reported on stderr.
var errSomeFailed = errors.New("some files could not be analysed")

func runAnalyze(_ context.Context, args []string, stdout, stderr io.Writer) error {
	cfg := analyzeConfig{Detect: detect.DefaultConfig()}
	fs := newFlagSet("analyze", "analyze [flags] FILE...", stderr)
	fs.DurationVar(&cfg.Detect.Interval, "interval", cfg.Detect.Interval, "expected time between the points of the series")
	fs.DurationVar(&cfg.Detect.WarmUp, "detect-warm-up", cfg.Detect.WarmUp, "start-up time of a series that the detector ignores")
	fs.DurationVar(&cfg.Detect.Persistence, "detect-persistence", cfg.Detect.Persistence, persistenceUsage)
	explain := fs.Bool("explain", false, "add why: the evidence behind the verdict when it first turned leaking (else at the last point)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg.Files = fs.Args()
	if err := cfg.Validate(); err != nil {
		return err
	}

	enc := json.NewEncoder(stdout)
	failed := false
	for _, name := range cfg.Files {
		res, err := analyzeFile(name, cfg.Detect)
		if err != nil {
			fmt.Fprintf(stderr, "leakwatch analyze: %s: %v\n", name, err)
			failed = true
			continue
		}
		res.File = name
		if !*explain {
			res.Explanation = nil
		}
		if err := enc.Encode(res); err != nil {
			return err
		}
	}
	if failed {
		return errSomeFailed
	}
	return nil
}

func analyzeFile(name string, cfg detect.Config) (detect.Result, error) {
	f, err := os.Open(name)
	if err != nil {
		return detect.Result{}, err
	}
	defer f.Close()
	return detect.Analyze(f, cfg)
}
