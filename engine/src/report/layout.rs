//! A layered, left-to-right layout of a run's DAG for the report's SVG: a step's column is the
//! length of the longest chain of needs before it, rows within a column follow the mean row of
//! the needs (so edges cross less), and a matrix's children stay together in one box.

/// Where each node goes, in SVG user units.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    /// Top-left corner of each node, by node index.
    pub nodes: Vec<(f64, f64)>,
    /// Boxes around matrix children in one column: (label, x, y, width, height).
    pub groups: Vec<(String, f64, f64, f64, f64)>,
}

pub const NODE_W: f64 = 200.0;
pub const NODE_H: f64 = 66.0;
const COL_GAP: f64 = 70.0;
const ROW_GAP: f64 = 14.0;
const MARGIN: f64 = 16.0;
/// Room for a group's label above its first child.
const GROUP_HEAD: f64 = 20.0;
const GROUP_PAD: f64 = 8.0;

/// Lays out `n` nodes. `edges` are `(from, to)` with `from` before `to` in the node order (a
/// topological order, as a plan's steps are); `group[i]` is the matrix a node belongs to
/// (`None` for a plain step).
pub fn layout(n: usize, edges: &[(usize, usize)], group: &[Option<String>]) -> Layout {
    let mut needs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(from, to) in edges {
        if from < n && to < n && from != to {
            needs[to].push(from);
        }
    }
    // Columns: nodes come after their needs, so one pass finds the longest chains.
    let mut column = vec![0usize; n];
    for i in 0..n {
        column[i] = needs[i]
            .iter()
            .filter(|&&j| j < i)
            .map(|&j| column[j] + 1)
            .max()
            .unwrap_or(0);
    }
    let columns = column.iter().copied().max().map_or(0, |c| c + 1);
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); columns];
    for i in 0..n {
        order[column[i]].push(i);
    }
    // Rows: each column sorted by the mean row of its needs; a matrix's children take their
    // group's mean and stay in their own order.
    let mut row = vec![0f64; n];
    for col in &order {
        for (r, &i) in col.iter().enumerate() {
            row[i] = r as f64;
        }
    }
    for col in order.iter_mut().skip(1) {
        let key = |i: usize| -> f64 {
            if needs[i].is_empty() {
                f64::MAX
            } else {
                needs[i].iter().map(|&j| row[j]).sum::<f64>() / needs[i].len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize, usize)> = col
            .iter()
            .map(|&i| {
                let members: Vec<usize> = match &group[i] {
                    Some(g) => col
                        .iter()
                        .copied()
                        .filter(|&k| group[k].as_ref() == Some(g))
                        .collect(),
                    None => vec![i],
                };
                let first = members.iter().copied().min().unwrap_or(i);
                let mean = members.iter().map(|&k| key(k)).sum::<f64>() / members.len() as f64;
                (mean, first, i)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        *col = keyed.into_iter().map(|(_, _, i)| i).collect();
        for (r, &i) in col.iter().enumerate() {
            row[i] = r as f64;
        }
    }
    // Positions: rows stacked, with room for group labels; columns side by side.
    let mut nodes = vec![(0.0, 0.0); n];
    let mut groups = Vec::new();
    let mut height: f64 = 0.0;
    for (c, col) in order.iter().enumerate() {
        let x = MARGIN + c as f64 * (NODE_W + COL_GAP);
        let mut y = MARGIN;
        let mut k = 0;
        while k < col.len() {
            let i = col[k];
            match &group[i] {
                Some(g) => {
                    let end = col[k..]
                        .iter()
                        .position(|&j| group[j].as_ref() != Some(g))
                        .map_or(col.len(), |p| k + p);
                    let top = y;
                    y += GROUP_HEAD;
                    for &j in &col[k..end] {
                        nodes[j] = (x, y);
                        y += NODE_H + ROW_GAP;
                    }
                    y += GROUP_PAD - ROW_GAP;
                    groups.push((
                        g.clone(),
                        x - GROUP_PAD,
                        top,
                        NODE_W + 2.0 * GROUP_PAD,
                        y - top,
                    ));
                    y += ROW_GAP;
                    k = end;
                }
                None => {
                    nodes[i] = (x, y);
                    y += NODE_H + ROW_GAP;
                    k += 1;
                }
            }
        }
        height = height.max(y - ROW_GAP + MARGIN);
    }
    let width = MARGIN * 2.0 + columns as f64 * NODE_W + columns.saturating_sub(1) as f64 * COL_GAP;
    Layout {
        width: width.max(NODE_W + 2.0 * MARGIN),
        height: height.max(NODE_H + 2.0 * MARGIN),
        nodes,
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(a: (f64, f64), b: (f64, f64)) -> bool {
        (a.0 - b.0).abs() < NODE_W && (a.1 - b.1).abs() < NODE_H
    }

    #[test]
    fn needs_go_left_of_their_steps_and_nodes_never_overlap() {
        // top -> (m.a, m.b, m.c) -> join; side alone.
        let g = |s: &str| Some(s.to_owned());
        let groups = vec![None, g("m"), g("m"), g("m"), None, None];
        let edges = [(0, 1), (0, 2), (0, 3), (1, 4), (2, 4), (3, 4)];
        let l = layout(6, &edges, &groups);
        for &(from, to) in &edges {
            assert!(l.nodes[from].0 + NODE_W < l.nodes[to].0, "{from} -> {to}");
        }
        for i in 0..6 {
            for j in i + 1..6 {
                assert!(!overlap(l.nodes[i], l.nodes[j]), "{i} and {j} overlap");
            }
            assert!(l.nodes[i].0 + NODE_W <= l.width && l.nodes[i].1 + NODE_H <= l.height);
        }
        // The matrix children share one column and one box around them.
        assert_eq!(l.groups.len(), 1);
        let (_, gx, gy, gw, gh) = l.groups[0].clone();
        for i in 1..4 {
            let (x, y) = l.nodes[i];
            assert!(x >= gx && x + NODE_W <= gx + gw && y >= gy && y + NODE_H <= gy + gh);
        }
    }

    #[test]
    fn a_hundred_unrelated_steps_make_one_column() {
        let l = layout(100, &[], &vec![None; 100]);
        assert!(l.nodes.iter().all(|n| n.0 == l.nodes[0].0));
        assert!(l.height > 100.0 * NODE_H);
    }
}
