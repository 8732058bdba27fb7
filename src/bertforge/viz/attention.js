/* Attention views, shared by the server's page and the self-contained HTML of `bertforge attention`.
 *
 * data = {tokens: [...], token_type_ids: [...], layers: [layer numbers], heads: [head numbers],
 *         attention: [layer][head][from][to]}   (the /attention answer)
 *
 * BertforgeAttention.render(container, data, {layer, head}) draws
 *   - the head view: the tokens twice, a line from each token to every token it attends to, the
 *     weight as the line's opacity; one head, or all heads of a layer in their colours; pointing at a
 *     token shows its lines alone;
 *   - the model view: a grid of every layer x head, each cell the same lines in miniature; a click on a
 *     cell shows that layer and head in the head view.
 * No library, nothing fetched: it works from a file opened on disk.
 */
(function (root) {
  "use strict";

  var COLORS = ["#3b6fd4", "#e0702b", "#2f9e58", "#d13f45", "#8a57c2", "#8c6248", "#d45aa8", "#6b7280",
                "#9aa322", "#1aa3b8", "#5566e8", "#c2551a", "#24803f", "#a52a2f", "#6d3da0", "#55781c"];
  var SVG = "http://www.w3.org/2000/svg";
  var MIN_WEIGHT = 0.01; // lines fainter than this are not drawn

  function headColor(h) { return COLORS[h % COLORS.length]; }

  function el(tag, attrs, parent, ns) {
    var node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    if (parent) parent.appendChild(node);
    return node;
  }

  function shown(token) { return token.length > 14 ? token.slice(0, 13) + "\u2026" : token; }

  // --- head view -----------------------------------------------------------------------------

  function headView(container, data, state) {
    container.textContent = "";
    var T = data.tokens.length, rowH = 20, top = 14;
    var longest = Math.max.apply(null, data.tokens.map(function (t) { return shown(t).length; }));
    var labelW = Math.max(48, Math.min(14, longest) * 7.5 + 12);
    var leftX = labelW, rightX = labelW + 150, width = rightX + labelW;
    var svg = el("svg", {width: width, height: top * 2 + T * rowH, class: "bfa-head-svg",
                         viewBox: "0 0 " + width + " " + (top * 2 + T * rowH)}, container, SVG);
    var lines = el("g", {class: "bfa-lines"}, svg, SVG);
    var heads = state.head === "all" ? data.heads.map(function (_, i) { return i; }) : [state.head];
    var y = function (i) { return top + i * rowH + rowH / 2; };
    var focus = null; // {side: "from" | "to", index}

    function draw() {
      lines.textContent = "";
      heads.forEach(function (h) {
        var m = data.attention[state.layer][h];
        for (var i = 0; i < T; i++) {
          if (focus && focus.side === "from" && focus.index !== i) continue;
          for (var j = 0; j < T; j++) {
            if (focus && focus.side === "to" && focus.index !== j) continue;
            var w = m[i][j];
            if (w < MIN_WEIGHT) continue;
            el("line", {x1: leftX, y1: y(i), x2: rightX, y2: y(j), stroke: headColor(data.heads[h]),
                        "stroke-opacity": Math.min(1, w * (heads.length > 1 ? 0.9 : 1)).toFixed(3),
                        "stroke-width": 2}, lines, SVG);
          }
        }
      });
    }

    ["from", "to"].forEach(function (side) {
      var group = el("g", {class: "bfa-tokens bfa-" + side}, svg, SVG);
      data.tokens.forEach(function (token, i) {
        var segment = data.token_type_ids ? data.token_type_ids[i] : 0;
        var text = el("text", {x: side === "from" ? leftX - 8 : rightX + 8, y: y(i) + 4,
                               "text-anchor": side === "from" ? "end" : "start",
                               class: "bfa-token" + (segment ? " bfa-seg-b" : ""), text: shown(token)}, group, SVG);
        el("title", {text: token + " (" + (side === "from" ? "attends to the right" : "attended to from the left")
                          + ")"}, text, SVG);
        text.addEventListener("mouseenter", function () { focus = {side: side, index: i}; draw(); text.classList.add("bfa-focus"); });
        text.addEventListener("mouseleave", function () { focus = null; draw(); text.classList.remove("bfa-focus"); });
      });
    });
    draw();
    return svg;
  }

  // --- model view ----------------------------------------------------------------------------

  function drawCell(canvas, matrix, color, size) {
    var ratio = root.devicePixelRatio || 1;
    canvas.width = size * ratio;
    canvas.height = size * ratio;
    canvas.style.width = size + "px";
    canvas.style.height = size + "px";
    var ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    var T = matrix.length, pad = 5, step = T > 1 ? (size - 2 * pad) / (T - 1) : 0;
    ctx.strokeStyle = color;
    ctx.lineWidth = 1;
    for (var i = 0; i < T; i++) {
      for (var j = 0; j < T; j++) {
        var w = matrix[i][j];
        if (w < MIN_WEIGHT) continue;
        ctx.globalAlpha = Math.min(1, w);
        ctx.beginPath();
        ctx.moveTo(pad + 6, pad + i * step);
        ctx.lineTo(size - pad - 6, pad + j * step);
        ctx.stroke();
      }
    }
  }

  function modelView(container, data, state, onSelect) {
    container.textContent = "";
    var size = data.heads.length > 8 ? 42 : 64;
    var grid = el("div", {class: "bfa-grid"}, container);
    grid.style.gridTemplateColumns = "auto repeat(" + data.heads.length + ", " + (size + 4) + "px)";
    el("div", {class: "bfa-corner"}, grid);
    data.heads.forEach(function (h) { el("div", {class: "bfa-col-label", text: "H" + h}, grid); });
    data.layers.forEach(function (layer, l) {
      el("div", {class: "bfa-row-label", text: "L" + layer}, grid);
      data.heads.forEach(function (head, h) {
        var selected = l === state.layer && (state.head === "all" || state.head === h);
        var cell = el("button", {type: "button", class: "bfa-cell" + (selected ? " bfa-selected" : ""),
                                 title: "layer " + layer + ", head " + head, "data-layer": l, "data-head": h}, grid);
        drawCell(el("canvas", {}, cell), data.attention[l][h], headColor(head), size);
        cell.addEventListener("click", function () { onSelect(l, h); });
      });
    });
    return grid;
  }

  // --- both views with their controls ----------------------------------------------------------

  function render(container, data, options) {
    options = options || {};
    container.textContent = "";
    var state = {layer: Math.max(0, data.layers.indexOf(options.layer === undefined ? data.layers[0] : options.layer)),
                 head: options.head === undefined || options.head === null ? 0
                       : options.head === "all" ? "all" : Math.max(0, data.heads.indexOf(options.head))};
    var root_ = el("div", {class: "bfa"}, container);
    var controls = el("div", {class: "bfa-controls"}, root_);
    el("label", {text: "Layer ", for: "bfa-layer"}, controls);
    var layerSel = el("select", {id: "bfa-layer", class: "bfa-layer"}, controls);
    data.layers.forEach(function (layer, l) { el("option", {value: l, text: String(layer)}, layerSel); });
    el("label", {text: "Head ", for: "bfa-head"}, controls);
    var headSel = el("select", {id: "bfa-head", class: "bfa-head"}, controls);
    if (data.heads.length > 1) el("option", {value: "all", text: "all"}, headSel);
    data.heads.forEach(function (head, h) { el("option", {value: h, text: String(head)}, headSel); });
    var legend = el("span", {class: "bfa-legend"}, controls);
    data.heads.forEach(function (head) {
      var item = el("span", {class: "bfa-swatch", title: "head " + head}, legend);
      item.style.background = headColor(head);
    });
    var views = el("div", {class: "bfa-views"}, root_);
    var headBox = el("div", {class: "bfa-view bfa-head-view"}, views);
    el("h3", {text: "Head view"}, headBox);
    var headCaption = el("p", {class: "bfa-caption"}, headBox);
    var headArea = el("div", {class: "bfa-scroll"}, headBox);
    var modelBox = el("div", {class: "bfa-view bfa-model-view"}, views);
    el("h3", {text: "Model view"}, modelBox);
    el("p", {class: "bfa-caption", text: "Every layer (rows) and head (columns); click one to see it in the head view."}, modelBox);
    var modelArea = el("div", {class: "bfa-scroll"}, modelBox);

    function update() {
      layerSel.value = String(state.layer);
      headSel.value = String(state.head);
      headCaption.textContent = "Layer " + data.layers[state.layer] + ", " +
        (state.head === "all" ? "all heads" : "head " + data.heads[state.head]) +
        ": each token (left) to the tokens it attends to (right); point at a token to see its lines alone.";
      headView(headArea, data, state);
      modelView(modelArea, data, state, function (l, h) { state.layer = l; state.head = h; update(); });
    }
    layerSel.addEventListener("change", function () { state.layer = Number(layerSel.value); update(); });
    headSel.addEventListener("change", function () {
      state.head = headSel.value === "all" ? "all" : Number(headSel.value); update();
    });
    update();
    return root_;
  }

  root.BertforgeAttention = {render: render, headView: headView, modelView: modelView, headColor: headColor};
})(window);
