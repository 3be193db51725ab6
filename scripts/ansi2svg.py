#!/usr/bin/env python3
"""Turn a terminal capture with ANSI colours (`tmux capture-pane -e -p`) into
an SVG of text, for the screenshots in images/. Standard library only.

    python3 scripts/ansi2svg.py capture.txt out.svg [--title TEXT]
"""
import html
import re
import sys

PALETTE = [  # xterm-like, tuned for a dark background
    "#1e1e1e", "#e06c75", "#98c379", "#e5c07b", "#61afef", "#c678dd", "#56b6c2", "#d0d0d0",
    "#5c6370", "#ff7b86", "#b5e890", "#ffd68a", "#82c4ff", "#e09cff", "#7fdbe6", "#ffffff",
]
FG, BG = "#d0d0d0", "#1e1e1e"
CW, LH, PAD, TOP = 8.4, 18, 14, 34  # char width, line height, padding, title bar


def color256(n):
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        lv = [0, 95, 135, 175, 215, 255]
        return "#%02x%02x%02x" % (lv[n // 36], lv[n // 6 % 6], lv[n % 6])
    v = 8 + (n - 232) * 10
    return "#%02x%02x%02x" % (v, v, v)


def parse(line):
    """Yields (text, fg, bold, dim) runs of one line."""
    fg, bold, dim = None, False, False
    pos = 0
    for m in re.finditer(r"\x1b\[([0-9;]*)m", line):
        if m.start() > pos:
            yield line[pos:m.start()], fg, bold, dim
        codes = [int(c) if c else 0 for c in m.group(1).split(";")]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                fg, bold, dim = None, False, False
            elif c == 1:
                bold = True
            elif c == 2:
                dim = True
            elif c == 22:
                bold = dim = False
            elif 30 <= c <= 37:
                fg = PALETTE[c - 30]
            elif 90 <= c <= 97:
                fg = PALETTE[c - 90 + 8]
            elif c == 39:
                fg = None
            elif c == 38 and i + 2 < len(codes) and codes[i + 1] == 5:
                fg = color256(codes[i + 2])
                i += 2
            elif c == 38 and i + 4 < len(codes) and codes[i + 1] == 2:
                fg = "#%02x%02x%02x" % tuple(codes[i + 2:i + 5])
                i += 4
            i += 1
        pos = m.end()
    if pos < len(line):
        yield line[pos:], fg, bold, dim
    # Other escapes (cursor movement) do not occur in capture-pane output.


def main():
    src, dst = sys.argv[1], sys.argv[2]
    title = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--title" else "bootstick"
    lines = open(src, encoding="utf-8", errors="replace").read().rstrip("\n").split("\n")
    while lines and not re.sub(r"\x1b\[[0-9;]*m", "", lines[-1]).strip():
        lines.pop()
    cols = max(len(re.sub(r"\x1b\[[0-9;]*m", "", l)) for l in lines)
    w = int(cols * CW + 2 * PAD)
    h = int(len(lines) * LH + 2 * PAD + TOP)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">',
        f'<rect width="{w}" height="{h}" rx="8" fill="{BG}"/>',
        f'<rect width="{w}" height="{TOP - 8}" rx="8" fill="#2d2d2d"/>',
        '<circle cx="18" cy="13" r="5" fill="#ff5f56"/><circle cx="36" cy="13" r="5" fill="#ffbd2e"/>'
        '<circle cx="54" cy="13" r="5" fill="#27c93f"/>',
        f'<text x="{w / 2}" y="17" fill="#9a9a9a" font-family="DejaVu Sans, sans-serif" font-size="12" '
        f'text-anchor="middle">{html.escape(title)}</text>',
        f'<g font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14" fill="{FG}">',
    ]
    for n, line in enumerate(lines):
        y = TOP + PAD + n * LH + 12
        col = 0
        for text, fg, bold, dim in parse(line):
            if not text:
                continue
            attrs = []
            if fg:
                attrs.append(f'fill="{fg}"')
            if bold:
                attrs.append('font-weight="bold"')
            if dim:
                attrs.append('opacity="0.6"')
            if text.strip():
                # One <text> per run, placed by column: monospace stays aligned
                # even where the renderer's font metrics differ slightly.
                out.append(
                    f'<text x="{PAD + col * CW:.1f}" y="{y}" xml:space="preserve" '
                    f'textLength="{len(text) * CW:.1f}" lengthAdjust="spacingAndGlyphs" {" ".join(attrs)}>'
                    f"{html.escape(text)}</text>"
                )
            col += len(text)
    out.append("</g></svg>")
    open(dst, "w", encoding="utf-8").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
