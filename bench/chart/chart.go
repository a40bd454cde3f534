// Package chart draws the simple PNG charts of the benchmark report (line
// charts such as latency CDFs and throughput over time, and grouped bar
// charts) with the standard image packages and the fixed 7x13 bitmap font of
// golang.org/x/image, so the report needs no plotting toolkit.
package chart

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"sort"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Size of every chart, in pixels.
const (
	Width  = 960
	Height = 540
)

const (
	left   = 80
	right  = 210 // room for the legend
	top    = 44
	bottom = 56
)

// Palette holds the series colours, in order; they stay distinct in print.
var Palette = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, // blue: sbx
	{0xd6, 0x27, 0x28, 0xff}, // red: podman
	{0x2c, 0xa0, 0x2c, 0xff}, // green: floor
	{0xff, 0x7f, 0x0e, 0xff},
	{0x94, 0x67, 0xbd, 0xff},
	{0x8c, 0x56, 0x4b, 0xff},
}

var (
	white = color.RGBA{0xff, 0xff, 0xff, 0xff}
	black = color.RGBA{0x20, 0x20, 0x20, 0xff}
	grid  = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
)

// Series is one named line: points (X[i], Y[i]).
type Series struct {
	Name string
	X, Y []float64
}

// Line is a line chart. LogX draws the x axis in powers of ten, which is how
// latencies from a few milliseconds to seconds stay readable side by side.
type Line struct {
	Title, XLabel, YLabel string
	LogX                  bool
	// YMax fixes the top of the y axis (100 for percentages); 0 fits the data.
	YMax   float64
	Series []Series
}

// CDF returns the empirical distribution of samples as a series: x the
// sorted samples, y the percentage of samples at or below x.
func CDF(name string, samples []float64) Series {
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	y := make([]float64, len(s))
	for i := range s {
		y[i] = 100 * float64(i+1) / float64(len(s))
	}
	return Series{Name: name, X: s, Y: y}
}

// Encode draws the chart as a PNG into w.
func (c Line) Encode(w io.Writer) error {
	xmin, xmax, ymin, ymax := math.Inf(1), math.Inf(-1), 0.0, math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.X {
			if c.LogX && s.X[i] <= 0 {
				continue
			}
			xmin, xmax = math.Min(xmin, s.X[i]), math.Max(xmax, s.X[i])
			ymin, ymax = math.Min(ymin, s.Y[i]), math.Max(ymax, s.Y[i])
		}
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax, ymax = 0, 1, 1
	}
	xa := newAxis(xmin, xmax, c.LogX)
	if c.YMax > 0 {
		ymax = c.YMax / 1.05
	}
	ya := newAxis(ymin, ymax*1.05, false)
	p := newPlot(c.Title, c.XLabel, c.YLabel, xa, ya, true)
	var names []string
	for i, s := range c.Series {
		col := Palette[i%len(Palette)]
		names = append(names, fmt.Sprintf("%s (n=%d)", s.Name, len(s.X)))
		var px, py int
		first := true
		for j := range s.X {
			if c.LogX && s.X[j] <= 0 {
				continue
			}
			x, y := p.at(s.X[j], s.Y[j])
			if !first {
				p.line(px, py, x, y, col)
			} else if len(s.X) == 1 {
				p.dot(x, y, col)
			}
			px, py, first = x, y, false
		}
	}
	p.legend(names)
	return png.Encode(w, p.img)
}

// Bars is a grouped bar chart: one group per label, one bar per series.
// A NaN value draws no bar (not measured). LogY suits values that span
// orders of magnitude.
type Bars struct {
	Title, YLabel string
	LogY          bool
	Groups        []string
	Series        []BarSeries
}

// BarSeries is one named bar per group.
type BarSeries struct {
	Name   string
	Values []float64
}

// Encode draws the chart as a PNG into w.
func (c Bars) Encode(w io.Writer) error {
	ymin, ymax := math.Inf(1), 0.0
	for _, s := range c.Series {
		for _, v := range s.Values {
			if !math.IsNaN(v) && v > 0 {
				ymin, ymax = math.Min(ymin, v), math.Max(ymax, v)
			}
		}
	}
	if ymax == 0 {
		ymin, ymax = 1, 1
	}
	lo := 0.0
	if c.LogY {
		lo = ymin / 2
	}
	ya := newAxis(lo, ymax*1.1, c.LogY)
	xa := newAxis(0, float64(len(c.Groups)), false)
	p := newPlot(c.Title, "", c.YLabel, xa, ya, false)
	gw := float64(p.w) / float64(max(len(c.Groups), 1))
	bw := gw * 0.8 / float64(max(len(c.Series), 1))
	for g, label := range c.Groups {
		x0 := float64(p.x0) + gw*float64(g) + gw*0.1
		p.text(int(x0+gw*0.4)-len(label)*7/2, p.y0+p.h+18, label, black)
		for i, s := range c.Series {
			if g >= len(s.Values) || math.IsNaN(s.Values[g]) || (c.LogY && s.Values[g] <= 0) {
				continue
			}
			_, y := p.at(0, s.Values[g])
			bx := int(x0 + bw*float64(i))
			r := image.Rect(bx, y, bx+int(bw)-2, p.y0+p.h)
			draw.Draw(p.img, r, image.NewUniform(Palette[i%len(Palette)]), image.Point{}, draw.Src)
			lbl := short(s.Values[g])
			p.text(bx+int(bw)/2-len(lbl)*7/2, y-3, lbl, black)
		}
	}
	var names []string
	for _, s := range c.Series {
		names = append(names, s.Name)
	}
	p.legend(names)
	return png.Encode(w, p.img)
}

// axis maps values to [0,1], linearly or by log10, and picks tick values.
type axis struct {
	lo, hi float64
	log    bool
}

func newAxis(lo, hi float64, log bool) axis {
	if log {
		if lo <= 0 {
			lo = hi / 1000
		}
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	} else {
		step := niceStep(hi - lo)
		lo = math.Floor(lo/step) * step
		hi = math.Ceil(hi/step) * step
	}
	if hi <= lo {
		hi = lo + 1
	}
	return axis{lo, hi, log}
}

// niceStep is a 1, 2 or 5 times a power of ten that cuts span into 4 to 10.
func niceStep(span float64) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

func (a axis) frac(v float64) float64 {
	if a.log {
		if v <= 0 {
			return 0
		}
		return (math.Log10(v) - math.Log10(a.lo)) / (math.Log10(a.hi) - math.Log10(a.lo))
	}
	return (v - a.lo) / (a.hi - a.lo)
}

func (a axis) ticks() []float64 {
	var out []float64
	if a.log {
		for d := a.lo; d <= a.hi*1.0001; d *= 10 {
			for _, m := range []float64{1, 2, 5} {
				if v := d * m; v <= a.hi*1.0001 {
					out = append(out, v)
				}
			}
		}
		return out
	}
	step := niceStep(a.hi - a.lo)
	for v := a.lo; v <= a.hi+step/1000; v += step {
		out = append(out, v)
	}
	return out
}

// short formats a tick or bar label compactly.
func short(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	case a >= 100 || a == math.Trunc(a):
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.3g", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}

// plot is the canvas with its plotting area [x0,x0+w]×[y0,y0+h].
type plot struct {
	img          *image.RGBA
	x0, y0, w, h int
	xa, ya       axis
}

func newPlot(title, xlabel, ylabel string, xa, ya axis, xTicks bool) *plot {
	img := image.NewRGBA(image.Rect(0, 0, Width, Height))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	p := &plot{img: img, x0: left, y0: top, w: Width - left - right, h: Height - top - bottom, xa: xa, ya: ya}
	p.text(left, 18, title, black)
	p.text(left+p.w/2-len(xlabel)*7/2, Height-12, xlabel, black)
	p.text(8, top-8, ylabel, black)
	for _, t := range ya.ticks() {
		_, y := p.at(xa.lo, t)
		p.hline(p.x0, p.x0+p.w, y, grid)
		l := short(t)
		p.text(p.x0-6-len(l)*7, y+4, l, black)
	}
	if xTicks {
		for _, t := range xa.ticks() {
			x, _ := p.at(t, ya.lo)
			p.vline(x, p.y0, p.y0+p.h, grid)
			l := short(t)
			p.text(x-len(l)*7/2, p.y0+p.h+16, l, black)
		}
	}
	p.hline(p.x0, p.x0+p.w, p.y0+p.h, black)
	p.vline(p.x0, p.y0, p.y0+p.h, black)
	return p
}

func (p *plot) at(x, y float64) (int, int) {
	return p.x0 + int(math.Round(p.xa.frac(x)*float64(p.w))),
		p.y0 + p.h - int(math.Round(p.ya.frac(y)*float64(p.h)))
}

func (p *plot) text(x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: p.img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func (p *plot) hline(x1, x2, y int, c color.Color) {
	for x := x1; x <= x2; x++ {
		p.img.Set(x, y, c)
	}
}

func (p *plot) vline(x, y1, y2 int, c color.Color) {
	for y := y1; y <= y2; y++ {
		p.img.Set(x, y, c)
	}
}

func (p *plot) dot(x, y int, c color.Color) {
	for dx := -3; dx <= 3; dx++ {
		for dy := -3; dy <= 3; dy++ {
			p.img.Set(x+dx, y+dy, c)
		}
	}
}

// line draws a 2-pixel-wide segment (Bresenham).
func (p *plot) line(x1, y1, x2, y2 int, c color.Color) {
	dx, dy := abs(x2-x1), -abs(y2-y1)
	sx, sy := sign(x2-x1), sign(y2-y1)
	e := dx + dy
	for {
		p.img.Set(x1, y1, c)
		p.img.Set(x1+1, y1, c)
		p.img.Set(x1, y1+1, c)
		if x1 == x2 && y1 == y2 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x1 += sx
		}
		if e2 <= dx {
			e += dx
			y1 += sy
		}
	}
}

func (p *plot) legend(names []string) {
	x := p.x0 + p.w + 16
	for i, n := range names {
		y := p.y0 + 8 + i*20
		r := image.Rect(x, y-8, x+14, y+2)
		draw.Draw(p.img, r, image.NewUniform(Palette[i%len(Palette)]), image.Point{}, draw.Src)
		p.text(x+20, y+2, n, black)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}
