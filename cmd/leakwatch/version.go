package main

import (
	"context"
	"fmt"
	"io"

	"github.com/leakwatch/leakwatch/pkg/buildinfo"
)

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	bi := buildinfo.Get()
	_, err := fmt.Fprintf(stdout, "leakwatch %s (revision %s, %s)\n", bi.Version, bi.Revision, bi.GoVersion)
	return err
}
