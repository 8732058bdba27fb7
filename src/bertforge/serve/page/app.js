/* The playground: a sentence (or two) in, and what the model makes of it out: its tokens, fill-mask
 * guesses, its task's prediction, the similarity of the two sentences, and its attention. Only the
 * routes the model serves (GET info) are called, so no request is refused. */
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var info = null;

  var EXAMPLES = {
    "fill-mask": ["The capital of France is [MASK].", "It is a beautiful city."],
    classify: ["A man is playing a guitar on stage.", "Someone is making music."],
    tag: ["Alice moved from Paris to London in 2019 .", ""],
    qa: ["Where does Alice live?", "Alice grew up in Paris. She now lives in London and works at a bank."],
    choice: ["Alice lives in Paris.", "She likes the city.\nThe river runs uphill."],
    embed: ["A man is playing a guitar on stage.", "Someone is making music."]
  };

  function api(path, body) {
    var init = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: JSON.stringify(body)};
    return fetch(path, init).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error((data.error || r.statusText) + (data.field ? " (" + data.field + ")" : ""));
        return data;
      });
    });
  }

  function el(tag, attrs, parent) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "class") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    if (parent) parent.appendChild(node);
    return node;
  }

  function show(id, on) { $(id).hidden = !on; }
  function serves(route) { return info && info.routes.indexOf(route) >= 0; }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }

  function bar(parent, label, value, extra) {
    var row = el("div", {class: "bar-row"}, parent);
    el("span", {class: "bar-label", text: label, title: label}, row);
    var track = el("span", {class: "bar-track"}, row);
    var fill = el("span", {class: "bar-fill"}, track);
    fill.style.width = Math.max(0, Math.min(1, value)) * 100 + "%";
    el("span", {class: "bar-value", text: extra || pct(value)}, row);
    return row;
  }

  function failed(target, error) {
    target.textContent = "";
    el("p", {class: "error", text: error.message}, target);
  }

  // --- start-up ---------------------------------------------------------------------------------

  function init() {
    api("info").then(function (data) {
      info = data;
      var c = data.config;
      $("model-line").textContent = "";
      el("strong", {id: "model-name", text: data.model}, $("model-line"));
      el("span", {class: "badge", id: "model-task", text: data.task}, $("model-line"));
      var sizes = c.layers ? c.layers + " layers · hidden " + c.hidden_size + " · " + c.heads + " heads · " : "";
      el("span", {class: "muted", text: c.model_type + " · " + sizes + data.backend +
                  (data.labels.length ? " · labels: " + data.labels.join(", ") : "")}, $("model-line"));
      var example = EXAMPLES[data.task] || EXAMPLES[data.task === "regress" ? "classify" : "embed"];
      if (data.task === "qa") {
        $("label-a").textContent = "Question";
        $("label-b").textContent = "Context";
      }
      if (data.task === "choice") {
        $("label-a").textContent = "Context";
        $("label-b").textContent = "Endings (one per line)";
      }
      if (data.task === "fill-mask") {
        $("hint").textContent = "Write " + data.mask_token + " where a word should be guessed.";
      }
      $("text-a").value = example[0];
      $("text-b").value = example[1];
      $("run").disabled = false;
    }).catch(function (e) {
      $("model-line").textContent = "cannot read the model: " + e.message;
    });
  }

  // --- one run ------------------------------------------------------------------------------------

  function run(event) {
    event.preventDefault();
    if (!info) return;
    var a = $("text-a").value.trim(), b = $("text-b").value.trim();
    if (!a) { $("status").textContent = "Type a sentence first."; return; }
    var input = b ? {text: a, text_pair: b} : a;
    var started = performance.now();
    $("status").textContent = "running…";
    $("run").disabled = true;
    var jobs = [];

    jobs.push(api("tokenize", {inputs: input, truncate: true}).then(function (t) {
      renderTokens(t);
      if (serves("attention")) return attention(input, t.tokens.length);
    }));
    var masked = (a + " " + b).indexOf(info.mask_token) >= 0;
    show("fillmask-card", serves("fill-mask") && masked);
    if (serves("fill-mask") && masked) {
      jobs.push(api("fill-mask", {inputs: input, truncate: true}).then(renderFillMask, failed.bind(null, $("fillmask"))));
    }
    show("prediction-card", serves("classify") || serves("tag") || serves("qa") || serves("choice"));
    if (serves("classify")) {
      jobs.push(api("classify", {inputs: input, truncate: true}).then(renderClassify, failed.bind(null, $("prediction"))));
    } else if (serves("tag")) {
      jobs.push(api("tag", {inputs: b ? [a, b] : [a], truncate: true}).then(renderTags, failed.bind(null, $("prediction"))));
    } else if (serves("choice")) {
      var endings = b.split("\n").map(function (e) { return e.trim(); }).filter(Boolean);
      if (endings.length) {
        jobs.push(api("choice", {inputs: {context: a, endings: endings}, truncate: true})
          .then(function (r) { renderChoice(r, endings); }, failed.bind(null, $("prediction"))));
      } else {
        $("prediction").textContent = "Give the endings (the second box), one per line.";
      }
    } else if (serves("qa")) {
      if (b) {
        jobs.push(api("qa", {inputs: {question: a, context: b}, truncate: true})
          .then(function (r) { renderAnswer(r, b); }, failed.bind(null, $("prediction"))));
      } else {
        $("prediction").textContent = "Give a context (the second box) for the question.";
      }
    }
    show("similarity-card", serves("embed") && !!b);
    if (serves("embed") && b) {
      jobs.push(api("embed", {inputs: [a, b], normalize: true, truncate: true}).then(renderSimilarity,
                                                                                  failed.bind(null, $("similarity"))));
    }
    Promise.allSettled(jobs).then(function (results) {
      var bad = results.filter(function (r) { return r.status === "rejected"; });
      $("status").textContent = bad.length ? bad[0].reason.message
                                           : "done in " + Math.round(performance.now() - started) + " ms";
      $("status").className = "status" + (bad.length ? " error" : " ok");
      $("run").disabled = false;
      document.body.setAttribute("data-state", "done");
    });
  }

  function attention(input, n) {
    show("attention-card", true);
    var c = info.config, body = {inputs: input, truncate: true};
    if (c.layers * c.heads * n * n > info.limits.max_attention_values) body.layer = c.layers - 1; // too much: one layer
    return api("attention", body).then(function (data) {
      BertforgeAttention.render($("attention"), data, {});
    }, failed.bind(null, $("attention")));
  }

  // --- the cards ------------------------------------------------------------------------------------

  function renderTokens(t) {
    show("tokens-card", true);
    var box = $("tokens");
    box.textContent = "";
    t.tokens.forEach(function (token, i) {
      var cls = "token" + (t.offsets[i] === null ? " special" : "") + (t.token_type_ids[i] ? " seg-b" : "");
      el("span", {class: cls, text: token, title: "id " + t.ids[i] + ", segment " + t.token_type_ids[i]}, box);
    });
    el("p", {class: "muted small", text: t.tokens.length + " pieces"}, box);
  }

  function renderFillMask(guesses) {
    var box = $("fillmask");
    box.textContent = "";
    guesses.forEach(function (candidates, m) {
      el("h3", {text: info.mask_token + (guesses.length > 1 ? " " + (m + 1) : "")}, box);
      candidates.forEach(function (c) { bar(box, c.token, c.score); });
    });
  }

  function renderClassify(r) {
    var box = $("prediction");
    box.textContent = "";
    $("prediction-title").textContent = info.task === "regress" ? "Score" : "Prediction";
    if (info.task === "regress") {
      el("p", {class: "big", text: r.score.toFixed(3)}, box);
      return;
    }
    el("p", {class: "big", id: "predicted-label", text: r.label}, box);
    r.scores.forEach(function (s) { bar(box, s.label, s.score); });
  }

  function renderChoice(r, endings) {
    var box = $("prediction");
    box.textContent = "";
    $("prediction-title").textContent = "Likeliest ending";
    el("p", {class: "big", id: "predicted-label", text: r.ending}, box);
    r.scores.forEach(function (score, i) { bar(box, endings[i], score); });
  }

  function renderTags(results) {
    var box = $("prediction");
    box.textContent = "";
    $("prediction-title").textContent = "Entities";
    var texts = [$("text-a").value.trim(), $("text-b").value.trim()];
    results.forEach(function (r, k) {
      var p = el("p", {class: "tagged"}, box), at = 0, text = texts[k];
      r.entities.forEach(function (e) {
        p.appendChild(document.createTextNode(text.slice(at, e.start)));
        var mark = el("mark", {class: "entity", title: e.entity + " " + pct(e.score)}, p);
        mark.appendChild(document.createTextNode(text.slice(e.start, e.end)));
        el("span", {class: "entity-type", text: e.entity}, mark);
        at = e.end;
      });
      p.appendChild(document.createTextNode(text.slice(at)));
      if (!r.entities.length) el("p", {class: "muted small", text: "no entities"}, box);
    });
  }

  function renderAnswer(r, context) {
    var box = $("prediction");
    box.textContent = "";
    $("prediction-title").textContent = "Answer";
    el("p", {class: "big", id: "answer", text: r.answer || "(no answer)"}, box);
    el("p", {class: "muted small", text: "score " + pct(r.score)}, box);
    if (r.start === null) return;
    var p = el("p", {class: "tagged"}, box);
    p.appendChild(document.createTextNode(context.slice(0, r.start)));
    el("mark", {class: "entity", text: context.slice(r.start, r.end)}, p);
    p.appendChild(document.createTextNode(context.slice(r.end)));
  }

  function renderSimilarity(vectors) {
    var box = $("similarity"), dot = 0;
    for (var i = 0; i < vectors[0].length; i++) dot += vectors[0][i] * vectors[1][i];
    box.textContent = "";
    el("p", {class: "big", id: "cosine", text: dot.toFixed(3)}, box);
    bar(box, "cosine", (dot + 1) / 2, dot.toFixed(3));
    el("p", {class: "muted small", text: "Cosine of the two sentences' mean-pooled vectors (-1 to 1)."}, box);
  }

  $("form").addEventListener("submit", run);
  $("run").disabled = true;
  init();
})();
