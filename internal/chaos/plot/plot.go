// Package plot draws a chaos report (internal/chaos.Report) as a chart: ok
// calls per second above, errors per second by kind below, both over the
// run's time, with a vertical line at each fault and at the instant the
// cluster was healthy again, and each fault's recovery time annotated where
// every slot had served again.
package plot

import (
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	gonum "gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/tollgate/tollgate/internal/chaos"
)

// Size of a chart.
const (
	width  = 30 * vg.Centimeter
	height = 18 * vg.Centimeter
)

// Write renders r into dir as <name>.svg, and <name>.png when png is set,
// and returns the paths written.
func Write(r chaos.Report, dir string, png bool) ([]string, error) {
	formats := []string{"svg"}
	if png {
		formats = append(formats, "png")
	}
	var paths []string
	for _, f := range formats {
		p := filepath.Join(dir, r.Name+"."+f)
		if err := writeFile(p, r, f); err != nil {
			return paths, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func writeFile(path string, r chaos.Report, format string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("plot: %w", cerr)
		}
	}()
	return Render(f, r, format)
}

// Render draws r in format, "svg" or "png", to w.
func Render(w io.Writer, r chaos.Report, format string) error {
	var c interface {
		vg.CanvasSizer
		io.WriterTo
	}
	switch format {
	case "svg":
		c = vgsvg.New(width, height)
	case "png":
		c = vgimg.PngCanvas{Canvas: vgimg.New(width, height)}
	default:
		return fmt.Errorf("plot: format %q: want svg or png", format)
	}
	top, bottom, err := charts(r)
	if err != nil {
		return err
	}
	plots := [][]*gonum.Plot{{top}, {bottom}}
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := gonum.Align(plots, tiles, draw.New(c))
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

// charts builds the two panels: ok calls/s and errors/s by kind.
func charts(r chaos.Report) (top, bottom *gonum.Plot, err error) {
	bucket := time.Duration(r.BucketMS) * time.Millisecond
	if bucket <= 0 {
		bucket = chaos.DefaultBucket
	}
	perSec := 1 / bucket.Seconds()
	sec := func(ms int64) float64 { return float64(ms) / 1000 }

	ok := make(plotter.XYs, len(r.Timeline))
	kinds := map[string]plotter.XYs{}
	var names []string
	for _, b := range r.Timeline {
		for k := range b.Errors {
			if _, seen := kinds[k]; !seen {
				kinds[k] = make(plotter.XYs, len(r.Timeline))
				names = append(names, k)
			}
		}
	}
	slices.Sort(names)
	maxOK, maxErr := 1.0, 1.0
	for i, b := range r.Timeline {
		// A bucket counts the calls that ended in [At, At+bucket): drawn at
		// its middle, errors do not seem to start before their fault.
		x := sec(b.AtMS) + bucket.Seconds()/2
		ok[i] = plotter.XY{X: x, Y: float64(b.OK) * perSec}
		maxOK = max(maxOK, ok[i].Y)
		for _, k := range names {
			kinds[k][i] = plotter.XY{X: x, Y: float64(b.Errors[k]) * perSec}
			maxErr = max(maxErr, kinds[k][i].Y)
		}
	}

	top = gonum.New()
	top.Title.Text = fmt.Sprintf("tollgate-lab chaos: %s (%d limiters, %.0f calls/s offered, %v buckets)", r.Name, r.Limiters, r.Rate, bucket)
	top.Y.Label.Text = "ok calls/s"
	top.Y.Min = 0
	top.Legend.Top = true
	if len(ok) > 0 {
		l, err := plotter.NewLine(ok)
		if err != nil {
			return nil, nil, fmt.Errorf("plot: %w", err)
		}
		l.Color = plotutil.Color(0)
		top.Add(l)
		top.Legend.Add("ok (allowed or denied)", l)
	}

	bottom = gonum.New()
	bottom.X.Label.Text = "seconds since the start of the run"
	bottom.Y.Label.Text = "errors/s"
	bottom.Y.Min = 0
	bottom.Legend.Top = true
	for i, k := range names {
		l, err := plotter.NewLine(kinds[k])
		if err != nil {
			return nil, nil, fmt.Errorf("plot: %w", err)
		}
		l.Color = plotutil.Color(i + 1)
		l.Dashes = plotutil.Dashes(i)
		bottom.Add(l)
		bottom.Legend.Add(k, l)
	}
	if len(names) == 0 {
		bottom.Title.Text = "no errors"
	}

	if err := mark(top, r, maxOK*1.15, true); err != nil {
		return nil, nil, err
	}
	if err := mark(bottom, r, maxErr*1.15, false); err != nil {
		return nil, nil, err
	}
	top.Y.Max, bottom.Y.Max = maxOK*1.25, maxErr*1.25
	return top, bottom, nil
}

// mark draws each fault's marker lines on p, up to ymax; labelled adds
// their labels: the fault's number, the cluster's recovery and the clients'.
func mark(p *gonum.Plot, r chaos.Report, ymax float64, labelled bool) error {
	faultColor := color.RGBA{R: 200, A: 255}
	healthyColor := color.RGBA{G: 140, A: 255}
	recoverColor := color.RGBA{B: 200, A: 255}
	var labels plotter.XYLabels
	for i, f := range r.Faults {
		n := i + 1
		at := float64(f.AtMS) / 1000
		healthy := at + float64(f.HealthyMS)/1000
		from := at
		if f.Idle {
			from = float64(f.ResumeMS) / 1000
		}
		recovered := from + float64(f.RecoveryMS)/1000
		for _, m := range []struct {
			x      float64
			c      color.Color
			dashes []vg.Length
		}{
			{at, faultColor, nil},
			{healthy, healthyColor, []vg.Length{vg.Points(4), vg.Points(2)}},
			{recovered, recoverColor, []vg.Length{vg.Points(1), vg.Points(2)}},
		} {
			l, err := plotter.NewLine(plotter.XYs{{X: m.x, Y: 0}, {X: m.x, Y: ymax}})
			if err != nil {
				return fmt.Errorf("plot: %w", err)
			}
			l.Color, l.Dashes = m.c, m.dashes
			p.Add(l)
		}
		if !labelled {
			continue
		}
		rec := fmt.Sprintf("recovered %v", time.Duration(f.RecoveryMS)*time.Millisecond)
		if f.Idle {
			rec += " after resume"
		}
		rec += fmt.Sprintf(" (bound %v)", time.Duration(f.BoundMS)*time.Millisecond)
		if len(f.Stuck) > 0 {
			rec += fmt.Sprintf(", %d slots STUCK", len(f.Stuck))
		}
		labels.XYs = append(labels.XYs,
			plotter.XY{X: at, Y: ymax},
			plotter.XY{X: healthy, Y: ymax * 0.93},
			plotter.XY{X: recovered, Y: ymax * 0.86})
		labels.Labels = append(labels.Labels,
			fmt.Sprintf("fault %d: %s", n, short(f.Name)),
			fmt.Sprintf("healthy %d: +%v", n, time.Duration(f.HealthyMS)*time.Millisecond),
			fmt.Sprintf("%d: %s", n, rec))
	}
	if len(labels.XYs) == 0 {
		return nil
	}
	ls, err := plotter.NewLabels(labels)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	for i := range ls.TextStyle {
		ls.TextStyle[i].Font.Size = vg.Points(7)
		ls.TextStyle[i].Color = []color.Color{faultColor, healthyColor, recoverColor}[i%3]
	}
	p.Add(ls)
	return nil
}

// short trims a fault's name for a label: without the "run N: " prefix,
// at most 40 characters.
func short(name string) string {
	if _, rest, ok := strings.Cut(name, ": "); ok && strings.HasPrefix(name, "run ") {
		name = rest
	}
	if r := []rune(name); len(r) > 40 {
		name = string(r[:39]) + "…"
	}
	return name
}
