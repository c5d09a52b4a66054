package detect

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLineBytes caps one CSV line, so a file without newlines cannot make
// the reader buffer it whole.
const MaxLineBytes = 64 << 10

// Sample is one row of a series file.
type Sample struct {
	T     float64 // seconds, absolute or relative
	Bytes float64
	Limit float64 // 0 when the file has no limit column or the cell is empty
	Line  int
}

// CSVReader streams a series file: a header naming the columns t (seconds)
// and bytes, optionally limit, in any order and among other columns, which
// are ignored; then one row per point in strictly increasing t. Blank lines
// and lines starting with '#' are skipped. Fields are separated by commas and
// may be wrapped in double quotes (without embedded commas or quotes). Every
// error names the line it is about.
type CSVReader struct {
	sc                   *bufio.Scanner
	line                 int
	header               bool
	cols                 int
	tCol, bCol, limitCol int
	prevT                float64
	prevLine             int
	rows                 int
}

// NewCSVReader returns a reader of r; it reads no more than a line ahead.
func NewCSVReader(r io.Reader) *CSVReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineBytes)
	return &CSVReader{sc: sc, limitCol: -1}
}

// Next returns the next row, or io.EOF after the last one. A file with no
// header, or a header and no rows, is an error, not io.EOF.
func (c *CSVReader) Next() (Sample, error) {
	for {
		fields, err := c.nextLine()
		if err != nil {
			return Sample{}, err
		}
		if fields == nil {
			continue
		}
		if !c.header {
			if err := c.parseHeader(fields); err != nil {
				return Sample{}, err
			}
			continue
		}
		return c.parseRow(fields)
	}
}

// nextLine returns the fields of the next line, nil for a skipped line.
func (c *CSVReader) nextLine() ([]string, error) {
	if !c.sc.Scan() {
		err := c.sc.Err()
		switch {
		case errors.Is(err, bufio.ErrTooLong):
			return nil, fmt.Errorf("line %d: longer than %d bytes", c.line+1, MaxLineBytes)
		case err != nil:
			return nil, fmt.Errorf("line %d: %w", c.line+1, err)
		case !c.header:
			return nil, errors.New("empty file: no header line")
		case c.rows == 0:
			return nil, fmt.Errorf("line %d: no data rows after the header", c.line)
		}
		return nil, io.EOF
	}
	c.line++
	b := c.sc.Bytes()
	if bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b) {
		return nil, fmt.Errorf("line %d: binary data, not a CSV text file", c.line)
	}
	if c.line == 1 {
		b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	}
	s := strings.TrimSpace(string(b))
	if s == "" || s[0] == '#' {
		return nil, nil
	}
	fields := strings.Split(s, ",")
	for i, f := range fields {
		f = strings.TrimSpace(f)
		if len(f) >= 2 && f[0] == '"' && f[len(f)-1] == '"' {
			f = strings.TrimSpace(f[1 : len(f)-1])
		}
		fields[i] = f
	}
	return fields, nil
}

func (c *CSVReader) parseHeader(fields []string) error {
	c.tCol, c.bCol, c.limitCol = -1, -1, -1
	for i, f := range fields {
		var col *int
		switch strings.ToLower(f) {
		case "t":
			col = &c.tCol
		case "bytes":
			col = &c.bCol
		case "limit":
			col = &c.limitCol
		default:
			continue
		}
		if *col >= 0 {
			return fmt.Errorf("line %d: header: column %q appears twice", c.line, f)
		}
		*col = i
	}
	var missing []string
	if c.tCol < 0 {
		missing = append(missing, `"t"`)
	}
	if c.bCol < 0 {
		missing = append(missing, `"bytes"`)
	}
	if len(missing) > 0 {
		return fmt.Errorf("line %d: header: missing column %s (want t and bytes, optionally limit)", c.line, strings.Join(missing, " and "))
	}
	c.cols = max(c.tCol, c.bCol, c.limitCol) + 1
	c.header = true
	return nil
}

func (c *CSVReader) parseRow(fields []string) (Sample, error) {
	if len(fields) < c.cols {
		return Sample{}, fmt.Errorf("line %d: %d fields, the header needs at least %d", c.line, len(fields), c.cols)
	}
	t, err := c.number("t", fields[c.tCol])
	if err != nil {
		return Sample{}, err
	}
	b, err := c.number("bytes", fields[c.bCol])
	if err != nil {
		return Sample{}, err
	}
	if b < 0 {
		return Sample{}, fmt.Errorf("line %d: bytes: negative value %s", c.line, fields[c.bCol])
	}
	var limit float64
	if c.limitCol >= 0 && fields[c.limitCol] != "" {
		if limit, err = c.number("limit", fields[c.limitCol]); err != nil {
			return Sample{}, err
		}
		if limit < 0 {
			return Sample{}, fmt.Errorf("line %d: limit: negative value %s", c.line, fields[c.limitCol])
		}
	}
	if c.rows > 0 {
		switch {
		case t == c.prevT:
			return Sample{}, fmt.Errorf("line %d: t: duplicate timestamp %s (also on line %d)", c.line, fields[c.tCol], c.prevLine)
		case t < c.prevT:
			return Sample{}, fmt.Errorf("line %d: t: %s is before %s on line %d (rows must be sorted by t)", c.line, fields[c.tCol], strconv.FormatFloat(c.prevT, 'g', -1, 64), c.prevLine)
		}
	}
	c.prevT, c.prevLine = t, c.line
	c.rows++
	return Sample{T: t, Bytes: b, Limit: limit, Line: c.line}, nil
}

func (c *CSVReader) number(col, s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		if len(s) > 32 {
			s = s[:32] + "..."
		}
		return 0, fmt.Errorf("line %d: %s: not a number: %q", c.line, col, s)
	}
	return v, nil
}

// ReadCSVFile reads every sample of a CSV file in the format CSVReader
// takes.
func ReadCSVFile(path string) ([]Sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadCSV(f)
}

// ReadCSV reads every sample of a series (see CSVReader) into memory.
func ReadCSV(in io.Reader) ([]Sample, error) {
	r := NewCSVReader(in)
	var out []Sample
	for {
		s, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
}
