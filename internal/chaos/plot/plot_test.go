package plot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/chaos"
)

// synthetic is a report of 6 s at 100 ms buckets with two faults: an
// outage of timeouts then MOVED after the first, and one injected while
// idle (recovery from the resume).
func synthetic() chaos.Report {
	r := chaos.Report{Name: "synthetic", Limiters: 3, Rate: 4000, BucketMS: 100}
	for i := range 60 {
		b := chaos.Bucket{AtMS: int64(i) * 100}
		b.Calls, b.OK = 400, 400
		switch {
		case i >= 10 && i < 15:
			b.OK, b.Errors = 250, map[string]int{"timeout": 150}
		case i >= 15 && i < 18:
			b.OK, b.Errors = 380, map[string]int{"moved": 20}
		case i >= 35 && i < 40: // paused
			b.Calls, b.OK = 0, 0
		}
		r.Timeline = append(r.Timeline, b)
	}
	r.Faults = []chaos.Fault{
		{Name: "run 1: kill -9 of master 127.0.0.11:15000", AtMS: 1000, HealthyMS: 1400, RecoveryMS: 900, BoundMS: 5000, Stuck: []int{}},
		{Name: "run 2: CLIENT KILL TYPE normal on every node", AtMS: 3600, HealthyMS: 50, Idle: true, ResumeMS: 4000, RecoveryMS: 300, BoundMS: 2000, Stuck: []int{7}},
	}
	return r
}

// TestRenderSVG renders the synthetic report and checks that the result is
// one well-formed SVG document carrying the panels' and markers' labels.
func TestRenderSVG(t *testing.T) {
	for _, c := range []struct {
		name string
		r    chaos.Report
		want []string
	}{
		{"faults", synthetic(), []string{
			"tollgate-lab chaos: synthetic", "ok calls/s", "errors/s", "timeout", "moved",
			"fault 1: kill -9 of master 127.0.0.11:15000", "healthy 1: +1.4s", "1: recovered 900ms (bound 5s)",
			"fault 2: CLIENT KILL TYPE normal on every node", "2: recovered 300ms after resume (bound 2s), 1 slots STUCK",
		}},
		{"empty", chaos.Report{Name: "empty"}, []string{"tollgate-lab chaos: empty", "no errors"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Render(&b, c.r, "svg"); err != nil {
				t.Fatal(err)
			}
			text := checkSVG(t, b.Bytes())
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("the SVG has no text %q", w)
				}
			}
		})
	}
}

// checkSVG parses doc as XML, checks that its root is an svg element and
// returns its text content.
func checkSVG(t *testing.T, doc []byte) string {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	var text strings.Builder
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = x.Name.Local
			}
		case xml.CharData:
			text.Write(x)
			text.WriteByte('\n')
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return text.String()
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	paths, err := Write(synthetic(), dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || paths[0] != filepath.Join(dir, "synthetic.svg") || paths[1] != filepath.Join(dir, "synthetic.png") {
		t.Fatalf("paths %v", paths)
	}
	svg, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	checkSVG(t, svg)
	png, err := os.ReadFile(paths[1])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("%s is not a PNG", paths[1])
	}
	if err := Render(io.Discard, synthetic(), "gif"); err == nil {
		t.Error("Render accepted gif")
	}
}
