// Writing the evaluation suite's figures (report/report.h): report.json, the CSVs the plots read,
// report.md, and running the plotting module.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "io/file.h"
#include "report/report.h"

extern char** environ;

namespace pslerp {
namespace {

// ---------------------------------------------------------------- formatting

std::string num(double v, int prec = 4) {
    if (std::isnan(v)) return "n/a";
    if (std::isinf(v)) return v > 0 ? "+inf" : "-inf";
    return absl::StrFormat("%.*f", prec, v);
}

std::string pct(double v, int prec = 2) {
    if (std::isnan(v)) return "n/a";
    return absl::StrFormat("%.*f%%", prec, 100 * v);
}

std::string acc(const Acceptance& a) {
    if (a.trials == 0) return "n/a";
    return absl::StrFormat("%s (%d / %d)", pct(a.rate()), a.accepted, a.trials);
}

std::string jnum(double v) {
    if (!std::isfinite(v)) return "null";
    return absl::StrFormat("%.9g", v);
}

std::string jstr(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string jacc(const Acceptance& a) {
    return absl::StrCat("{\"trials\": ", a.trials, ", \"accepted\": ", a.accepted, ", \"rate\": ", jnum(a.rate()), "}");
}

std::string scheme_text(const Params& p) { return absl::StrCat(p.groups, "x", p.group_dim, " ", p.describe()); }

const TarAtFar* tar_at(const SystemVerification& v, double far) {
    for (const TarAtFar& t : v.report.tar)
        if (std::abs(t.target_far - far) <= 1e-12) return &t;
    return nullptr;
}

std::string tar_cell(const TarAtFar& t) {
    if (!t.resolvable) return absl::StrFormat("n/r (%d impostor pairs)", t.nonmated);
    return absl::StrFormat("%s (%d / %d impostors accepted)", pct(t.tar), t.false_accepts, t.nonmated);
}

double strongest(const PointFigures& f, bool same, bool template_only) {
    double d = 0;
    for (size_t k = 0; k < f.links.size(); ++k) {
        if (template_only && k == 2) continue;  // the stolen-keys attacker
        d = std::max(d, same ? f.links[k].same.d_sys : f.links[k].other.d_sys);
    }
    return d;
}

/// The stronger of the two stolen-token projection attacks (key removed, slerp undone).
double best_projection(const PointFigures& f, bool protected_system) {
    double best = 0;
    for (size_t k = 1; k < f.attacks.size(); ++k) {
        const Acceptance& a = protected_system ? f.attacks[k].protected_other : f.attacks[k].unprotected_other;
        if (a.trials) best = std::max(best, a.rate());
    }
    return best;
}

const OpenSetPoint* open_at(const SearchFigures& s, size_t k) { return k < s.open_set.size() ? &s.open_set[k] : nullptr; }

// ---------------------------------------------------------------- JSON

std::string verification_json(const SystemVerification& v) {
    std::vector<std::string> tars;
    for (const TarAtFar& t : v.report.tar) {
        tars.push_back(absl::StrCat("{\"far\": ", jnum(t.target_far), ", \"tar\": ", jnum(t.tar), ", \"threshold\": ",
                                    jnum(t.threshold), ", \"false_accepts\": ", t.false_accepts,
                                    ", \"nonmated_pairs\": ", t.nonmated, ", \"resolvable\": ",
                                    t.resolvable ? "true" : "false", "}"));
    }
    return absl::StrCat("{\"eer\": ", jnum(v.report.eer.eer), ", \"eer_threshold\": ", jnum(v.report.eer.threshold),
                        ", \"mated_pairs\": ", v.report.roc.mated, ", \"nonmated_pairs\": ", v.report.roc.nonmated,
                        ", \"attack_threshold\": ", jnum(v.attack_threshold), ", \"tar\": [", absl::StrJoin(tars, ", "),
                        "]}");
}

std::string search_json(const SearchFigures& s) {
    std::vector<std::string> open, sizes;
    for (const OpenSetPoint& o : s.open_set) {
        open.push_back(absl::StrCat("{\"fpir_target\": ", jnum(o.target_fpir), ", \"fpir\": ", jnum(o.fpir),
                                    ", \"dir\": ", jnum(o.dir), ", \"threshold\": ", jnum(o.threshold),
                                    ", \"false_positives\": ", o.false_positives, ", \"nonmated_searches\": ",
                                    o.nonmated_searches, ", \"resolvable\": ", o.resolvable ? "true" : "false", "}"));
    }
    for (size_t k = 0; k < s.sizes.size(); ++k) {
        sizes.push_back(absl::StrCat("{\"gallery\": ", s.sizes[k], ", \"searches\": ", s.size_searches[k],
                                     ", \"rank1\": ", jnum(s.size_rank1[k]), "}"));
    }
    return absl::StrCat("{\"gallery\": ", s.gallery, ", \"mated_searches\": ", s.mated_searches,
                        ", \"nonmated_searches\": ", s.nonmated_searches, ", \"rank1\": ", jnum(s.rank1),
                        ", \"open_set\": [", absl::StrJoin(open, ", "), "], \"rank1_by_gallery_size\": [",
                        absl::StrJoin(sizes, ", "), "]}");
}

std::string point_json(const PointFigures& f) {
    std::vector<std::string> links, attacks;
    for (const LinkFigures& l : f.links) {
        links.push_back(absl::StrCat("{\"attacker\": ", jstr(l.attacker), ", \"uses\": ", jstr(l.uses),
                                     ", \"d_sys_same_sample\": ", jnum(l.same.d_sys), ", \"d_sys_other_samples\": ",
                                     jnum(l.other.d_sys), ", \"floor_same_sample\": ", jnum(l.floor_same),
                                     ", \"floor_other_samples\": ", jnum(l.floor_other), ", \"same_pairs\": ", l.same_pairs,
                                     ", \"other_pairs\": ",
                                     l.other_pairs, ", \"nonmated_pairs\": ", l.nonmated_pairs, "}"));
    }
    for (const AttackFigures& a : f.attacks) {
        attacks.push_back(absl::StrCat("{\"attack\": ", jstr(a.attack), ", \"cosine_to_raw\": ", jnum(a.cosine_to_raw),
                                       ", \"protected_same_sample\": ", jacc(a.protected_same),
                                       ", \"protected_other_samples\": ", jacc(a.protected_other),
                                       ", \"unprotected_other_samples\": ", jacc(a.unprotected_other), "}"));
    }
    return absl::StrCat(
            "{\"label\": ", jstr(f.label), ", \"scheme\": ", jstr(scheme_text(f.params)), ", \"groups\": ", f.params.groups,
            ", \"group_dim\": ", f.params.group_dim, ",\n \"verification\": {\"protected\": ", verification_json(f.prot),
            ", \"unprotected\": ", verification_json(f.unprot), "},\n \"identification\": {\"protected\": ",
            search_json(f.search_prot), ", \"unprotected\": ", search_json(f.search_unprot),
            "},\n \"unlinkability\": [", absl::StrJoin(links, ", "), "], \"unprotected_d_sys\": ", jnum(f.unprotected_d_sys), ",\n \"irreversibility\": {\"attacks\": [",
            absl::StrJoin(attacks, ", "), "], \"impostor_protected\": ", jacc(f.impostor_prot),
            ", \"impostor_unprotected\": ", jacc(f.impostor_unprot), "},\n \"renewability\": {\"d_sys_same_sample\": ",
            jnum(f.renew.d_sys_same), ", \"old_template_as_probe_same\": ", jacc(f.renew.old_template_same),
            ", \"old_template_as_probe_other\": ", jacc(f.renew.old_template_other),
            ", \"new_key_probe_vs_old_template_same\": ", jacc(f.renew.new_probe_same),
            ", \"new_key_probe_vs_old_template_other\": ", jacc(f.renew.new_probe_other),
            ", \"new_key_probe_vs_old_template_nonmated\": ", jacc(f.renew.new_probe_nonmated),
            "}, \"clamped\": ", f.clamped, "}");
}

// ---------------------------------------------------------------- CSV

/// ROC points thinned for plotting: a point is kept when FAR or TAR moved visibly.
void roc_rows(const std::string& system, const Roc& roc, std::string* out) {
    double last_far = -1, last_tar = -1;
    const size_t m = roc.far.size();
    for (size_t k = 0; k < m; ++k) {
        const bool moved = k == 0 || k + 1 == m || roc.far[k] > last_far * 1.01 + 1e-12 || roc.tar[k] > last_tar + 0.001;
        if (!moved) continue;
        absl::StrAppend(out, system, ",", jnum(roc.thresholds[k]), ",", jnum(roc.far[k]), ",", jnum(roc.tar[k]), "\n");
        last_far = roc.far[k];
        last_tar = roc.tar[k];
    }
}

void histogram_rows(const std::string& system, const SystemVerification& v, std::string* out) {
    constexpr int kBins = 60;
    float lo = std::min(*std::min_element(v.mated.begin(), v.mated.end()),
                        *std::min_element(v.nonmated.begin(), v.nonmated.end()));
    float hi = std::max(*std::max_element(v.mated.begin(), v.mated.end()),
                        *std::max_element(v.nonmated.begin(), v.nonmated.end()));
    if (!(hi > lo)) hi = lo + 1;
    const double w = (double(hi) - lo) / kBins;
    for (const auto& [kind, s] : {std::pair<const char*, const std::vector<float>*>{"mated", &v.mated},
                                  {"nonmated", &v.nonmated}}) {
        std::vector<int64_t> h(kBins, 0);
        for (float x : *s) ++h[std::clamp(int((x - lo) / w), 0, kBins - 1)];
        for (int b = 0; b < kBins; ++b) {
            absl::StrAppend(out, system, ",", kind, ",", jnum(lo + b * w), ",", jnum(lo + (b + 1) * w), ",",
                            jnum(double(h[b]) / (double(s->size()) * w)), "\n");
        }
    }
}

absl::Status write(const std::string& dir, const std::string& name, const std::string& text) {
    return atomic_write_file((std::filesystem::path(dir) / name).string(), text);
}

// ---------------------------------------------------------------- markdown

std::string verification_md(const EvalReport& r, const PointFigures& f) {
    std::string s = "| system | EER |";
    std::string rule = "|---|---|";
    for (double far : r.options.fars) absl::StrAppend(&s, " TAR@FAR", absl::StrFormat("%g", far), " |"), rule += "---|";
    absl::StrAppend(&s, " mated / non-mated pairs |\n", rule, "---|\n");
    for (const auto& [name, v] : {std::pair<const char*, const SystemVerification*>{"protected", &f.prot},
                                  {"unprotected", &f.unprot}}) {
        absl::StrAppend(&s, "| ", name, " | ", pct(v->report.eer.eer), " |");
        for (const TarAtFar& t : v->report.tar) absl::StrAppend(&s, " ", tar_cell(t), " |");
        absl::StrAppend(&s, " ", v->report.roc.mated, " / ", v->report.roc.nonmated, " |\n");
    }
    return s;
}

std::string open_cell(const OpenSetPoint* o) {
    if (!o) return "n/a";
    if (!o->resolvable) return absl::StrFormat("n/r (%d non-mated searches)", o->nonmated_searches);
    return absl::StrFormat("%s (thr %s; %d / %d non-mated searches pass)", pct(o->dir), num(o->threshold),
                           o->false_positives, o->nonmated_searches);
}

std::string identification_md(const EvalReport& r, const PointFigures& f) {
    const SearchFigures& p = f.search_prot;
    std::string s = absl::StrFormat(
            "Gallery: %d identities, one enrolment each; %d mated searches (the other samples of enrolled "
            "identities); %d non-mated searches (every sample of the identities kept out). Open-set "
            "thresholds are calibrated on the non-mated searches' best scores.\n\n",
            p.gallery, p.mated_searches, p.nonmated_searches);
    absl::StrAppend(&s, "| system | rank-1 (closed set) |");
    std::string rule = "|---|---|";
    for (double fp : r.options.fpirs) absl::StrAppend(&s, " DIR @ FPIR ", absl::StrFormat("%g", fp), " |"), rule += "---|";
    absl::StrAppend(&s, "\n", rule, "\n");
    for (const auto& [name, sf] : {std::pair<const char*, const SearchFigures*>{"protected", &f.search_prot},
                                   {"unprotected", &f.search_unprot}}) {
        absl::StrAppend(&s, "| ", name, " | ", pct(sf->rank1), " |");
        for (size_t k = 0; k < r.options.fpirs.size(); ++k) absl::StrAppend(&s, " ", open_cell(open_at(*sf, k)), " |");
        absl::StrAppend(&s, "\n");
    }
    if (!p.sizes.empty()) {
        absl::StrAppend(&s, "\nRank-1 against gallery size (the first identities of a seeded order; searches: their "
                            "mated samples):\n\n| gallery | searches | rank-1 protected | rank-1 unprotected |\n|---|---|---|---|\n");
        for (size_t k = 0; k < p.sizes.size(); ++k) {
            const double u = k < f.search_unprot.size_rank1.size() ? f.search_unprot.size_rank1[k] : NAN;
            absl::StrAppend(&s, "| ", p.sizes[k], " | ", p.size_searches[k], " | ", pct(p.size_rank1[k]), " | ",
                            pct(u), " |\n");
        }
    }
    return s;
}

/// The base point, then the sweep's points.
std::vector<const PointFigures*> all_points(const EvalReport& r) {
    std::vector<const PointFigures*> points = {&r.base};
    for (const PointFigures& f : r.sweep) points.push_back(&f);
    return points;
}

std::string sweep_md(const EvalReport& r) {
    std::string s =
            "| point | scheme | EER prot / unprot | TAR@FAR1e-3 prot / unprot | rank-1 prot / unprot | "
            "D_sys template cosine (same / other sample) | D_sys strongest template-only attacker (same) | "
            "best projection attack accepted: protected / unprotected (other samples) | template probe accepted (protected, other) |\n"
            "|---|---|---|---|---|---|---|---|---|\n";
    for (const PointFigures* f : all_points(r)) {
        const TarAtFar* tp = tar_at(f->prot, 1e-3);
        const TarAtFar* tu = tar_at(f->unprot, 1e-3);
        absl::StrAppend(&s, "| ", f->label, " | ", scheme_text(f->params), " | ", pct(f->prot.report.eer.eer), " / ",
                        pct(f->unprot.report.eer.eer), " | ", tp && tp->resolvable ? pct(tp->tar) : "n/r", " / ",
                        tu && tu->resolvable ? pct(tu->tar) : "n/r", " | ", pct(f->search_prot.rank1), " / ",
                        pct(f->search_unprot.rank1), " | ", num(f->links[0].same.d_sys, 3), " / ",
                        num(f->links[0].other.d_sys, 3), " | ", num(strongest(*f, true, true), 3), " | ",
                        pct(best_projection(*f, true)), " / ", pct(best_projection(*f, false)),
                        " | ", pct(f->attacks[0].protected_other.rate()), " |\n");
    }
    return s;
}

std::string sweep_csv(const EvalReport& r) {
    std::string s =
            "label,scheme,groups,t,drop,drop_count,eer_protected,eer_unprotected,tar1e3_protected,tar1e3_unprotected,"
            "rank1_protected,rank1_unprotected,dsys_template_same,dsys_template_other,dsys_masked_same,"
            "dsys_stolen_keys_same,projection_accept_protected,projection_accept_unprotected,template_accept_protected,"
            "cosine_undone_to_raw\n";
    for (const PointFigures* f : all_points(r)) {
        const TarAtFar* tp = tar_at(f->prot, 1e-3);
        const TarAtFar* tu = tar_at(f->unprot, 1e-3);
        absl::StrAppend(&s, f->label, ",\"", scheme_text(f->params), "\",", f->params.groups, ",", jnum(f->params.t), ",",
                        f->params.get("drop"), ",", f->params.drop_count, ",", jnum(f->prot.report.eer.eer), ",",
                        jnum(f->unprot.report.eer.eer), ",", tp ? jnum(tp->tar) : "", ",", tu ? jnum(tu->tar) : "", ",",
                        jnum(f->search_prot.rank1), ",", jnum(f->search_unprot.rank1), ",", jnum(f->links[0].same.d_sys),
                        ",", jnum(f->links[0].other.d_sys), ",", jnum(f->links[1].same.d_sys), ",",
                        jnum(f->links[2].same.d_sys), ",", jnum(best_projection(*f, true)), ",",
                        jnum(best_projection(*f, false)), ",", jnum(f->attacks[0].protected_other.rate()),
                        ",", jnum(f->attacks[2].cosine_to_raw), "\n");
    }
    return s;
}

}  // namespace

std::string report_json(const EvalReport& r) {
    std::vector<std::string> sweep;
    for (const PointFigures& f : r.sweep) sweep.push_back(point_json(f));
    std::vector<std::string> fars, fpirs;
    for (double v : r.options.fars) fars.push_back(jnum(v));
    for (double v : r.options.fpirs) fpirs.push_back(jnum(v));
    return absl::StrCat(
            "{\"version\": ", jstr(r.version), ", \"command\": ", jstr(r.options.command), ",\n\"data\": {\"n\": ", r.n,
            ", \"dim\": ", r.dim, ", \"identities\": ", r.identities, ", \"centring\": ", jstr(r.centring),
            "},\n\"options\": {\"scheme\": ", jstr(scheme_text(r.options.params)), ", \"sweep\": ",
            jstr(describe_sweep(r.options.sweep)), ", \"seed\": ", r.options.seed ? std::to_string(*r.options.seed) : "null",
            ", \"keys\": ", jstr(r.options.seed ? "seeded (reproducible; tests only)" : "OS generator"),
            ", \"max_nonmated_pairs\": ", r.options.max_nonmated_pairs, ", \"bins\": ", r.options.bins,
            ", \"nonmated_identity_fraction\": ", jnum(r.options.nonmated_identity_fraction), ", \"fars\": [",
            absl::StrJoin(fars, ", "), "], \"fpirs\": [", absl::StrJoin(fpirs, ", "), "], \"attack_far\": ",
            jnum(r.options.attack_far), ", \"symmetric_pairs\": ", r.options.symmetric_pairs ? "true" : "false",
            "},\n\"base\": ", point_json(r.base), ",\n\"sweep\": [", absl::StrJoin(sweep, ",\n"), "]}\n");
}

absl::Status write_report_data(const EvalReport& r, const std::string& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
    if (absl::Status st = write(dir, "report.json", report_json(r)); !st.ok()) return st;
    const PointFigures& b = r.base;
    std::string roc = "system,threshold,far,tar\n";
    roc_rows("protected", b.prot.report.roc, &roc);
    roc_rows("unprotected", b.unprot.report.roc, &roc);
    if (absl::Status st = write(dir, "roc.csv", roc); !st.ok()) return st;
    std::string hist = "system,kind,lo,hi,density\n";
    histogram_rows("protected", b.prot, &hist);
    histogram_rows("unprotected", b.unprot, &hist);
    if (absl::Status st = write(dir, "scores.csv", hist); !st.ok()) return st;
    std::string unl = "attacker,scenario,d_sys,lo,hi,p_mated,p_nonmated,d_local\n";
    for (const LinkFigures& l : b.links) {
        for (const auto& [scenario, u] : {std::pair<const char*, const Unlinkability*>{"same sample", &l.same},
                                          {"other samples", &l.other}}) {
            for (size_t k = 0; k < u->d_local.size(); ++k) {
                absl::StrAppend(&unl, "\"", l.attacker, "\",", scenario, ",", jnum(u->d_sys), ",", jnum(u->bin_edges[k]),
                                ",", jnum(u->bin_edges[k + 1]), ",", jnum(u->p_mated[k]), ",", jnum(u->p_nonmated[k]), ",",
                                jnum(u->d_local[k]), "\n");
            }
        }
    }
    if (absl::Status st = write(dir, "unlinkability.csv", unl); !st.ok()) return st;
    std::string sizes = "system,gallery,searches,rank1\n";
    for (const auto& [name, s] : {std::pair<const char*, const SearchFigures*>{"protected", &b.search_prot},
                                  {"unprotected", &b.search_unprot}}) {
        for (size_t k = 0; k < s->sizes.size(); ++k)
            absl::StrAppend(&sizes, name, ",", s->sizes[k], ",", s->size_searches[k], ",", jnum(s->size_rank1[k]), "\n");
    }
    if (absl::Status st = write(dir, "rank1_gallery.csv", sizes); !st.ok()) return st;
    return write(dir, "sweep.csv", sweep_csv(r));
}

absl::Status write_report_markdown(const EvalReport& r, const std::string& dir, const std::string& plots_note) {
    const PointFigures& b = r.base;
    std::string s = "# pslerp evaluation report\n\n";
    absl::StrAppend(&s, "Produced by: `", r.options.command, "` (pslerp ", r.version, ")\n\n");
    absl::StrAppend(&s, "- features: ", r.n, " rows of dimension ", r.dim, ", ", r.identities, " identities\n");
    absl::StrAppend(&s, "- centring: ", r.centring, "\n");
    absl::StrAppend(&s, "- base scheme: `", scheme_text(r.options.params), "`\n");
    absl::StrAppend(&s, "- keys: ",
                    r.options.seed ? absl::StrCat("seeded, seed ", *r.options.seed,
                                                  " (reproducible figures; for tests and benchmarks only)")
                                   : std::string("fresh from the OS generator (figures vary by key draw)"),
                    "\n");
    absl::StrAppend(&s, "- unprotected system: the mean of the ", r.options.params.groups,
                    " group cosines of centred, group-normalised features; protected system: IndexProtectedSlerp "
                    "(raw probe against protected entries)\n");
    const bool all_nonmated = b.prot.report.roc.nonmated < r.options.max_nonmated_pairs;
    absl::StrAppend(&s, "- pairs: every mated pair and ",
                    all_nonmated ? "every non-mated pair" : "a seeded sample of the non-mated pairs",
                    r.options.symmetric_pairs ? "; protected scores averaged over both directions"
                                              : "; the first sample is the probe, the second the enrolled entry",
                    "\n\n");
    absl::StrAppend(&s, "## 1. Verification\n\n", verification_md(r, b), "\n");
    absl::StrAppend(&s, "## 2. 1:N identification\n\n", identification_md(r, b), "\n");

    absl::StrAppend(&s, "## 3. Unlinkability\n\nEvery sample enrolled twice under fresh keys (two databases); an attacker "
                        "scores every cross-database pair. D_sys (Gomez-Barrero et al. 2018; ",
                    r.options.bins, " bins): 0 unlinkable, 1 fully linkable. Mated: the same sample in both databases, "
                    "or another sample of the same person; non-mated: different people.\n\n"
                    "In brackets: the estimator's floor at these counts (D_sys of non-mated scores against non-mated "
                    "scores, split at random), what a perfectly unlinkable system would measure here.\n\n"
                    "| attacker | uses | D_sys, same sample | D_sys, other samples | pairs (same / other / non-mated) |\n"
                    "|---|---|---|---|---|\n");
    for (const LinkFigures& l : b.links) {
        absl::StrAppend(&s, "| ", l.attacker, " | ", l.uses, " | ", num(l.same.d_sys, 3), " (", num(l.floor_same, 3),
                        ") | ", num(l.other.d_sys, 3), " (", num(l.floor_other, 3), ") | ", l.same_pairs, " / ",
                        l.other_pairs, " / ", l.nonmated_pairs, " |\n");
    }
    absl::StrAppend(&s, "| reference: unprotected features compared directly | the raw features | - | ",
                    num(b.unprotected_d_sys, 3), " | - / ", b.unprot.report.roc.mated, " / ", b.unprot.report.roc.nonmated,
                    " |\n");

    const double tp = b.prot.attack_threshold, tu = b.unprot.attack_threshold;
    absl::StrAppend(&s, "\n## 4. Irreversibility\n\nThe attacker steals one enrolment (templates, keys, masks) and "
                        "turns each entry into a probe. Protected system: the probe against the person's enrolment in "
                        "another database (fresh keys), accepted at that system's FAR ",
                    absl::StrFormat("%g", r.options.attack_far), " threshold ", num(tp),
                    "; unprotected: cosine with the person's other raw samples at its FAR ",
                    absl::StrFormat("%g", r.options.attack_far), " threshold ", num(tu),
                    ". The random impostor row is another person's raw sample against the same targets.\n\n"
                    "| attack | mean cosine to the raw feature | protected: same sample re-enrolled | protected: other "
                    "samples | unprotected: other samples |\n|---|---|---|---|---|\n");
    for (const AttackFigures& a : b.attacks) {
        absl::StrAppend(&s, "| ", a.attack, " | ", num(a.cosine_to_raw, 3), " | ", acc(a.protected_same), " | ",
                        acc(a.protected_other), " | ", acc(a.unprotected_other), " |\n");
    }
    absl::StrAppend(&s, "| random impostor | - | - | ", acc(b.impostor_prot), " | ", acc(b.impostor_unprot), " |\n");

    absl::StrAppend(&s, "\n## 5. Renewability\n\nThe old enrolment against the renewed one (fresh keys), at the "
                        "protected threshold ", num(tp), ".\n\n| measure | value |\n|---|---|\n");
    absl::StrAppend(&s, "| D_sys old vs new template (template cosine, same sample) | ", num(b.renew.d_sys_same, 3), " |\n");
    absl::StrAppend(&s, "| old template as a probe of the renewed system: same sample | ", acc(b.renew.old_template_same), " |\n");
    absl::StrAppend(&s, "| old template as a probe of the renewed system: other samples | ", acc(b.renew.old_template_other), " |\n");
    absl::StrAppend(&s, "| genuine probe with the new key against the old template: same sample | ", acc(b.renew.new_probe_same), " |\n");
    absl::StrAppend(&s, "| genuine probe with the new key against the old template: other samples | ", acc(b.renew.new_probe_other), " |\n");
    absl::StrAppend(&s, "| genuine probe with the new key against the old template: non-mated | ", acc(b.renew.new_probe_nonmated), " |\n");

    if (!r.sweep.empty()) {
        absl::StrAppend(&s, "\n## 6. Sweep\n\n`--sweep \"", describe_sweep(r.options.sweep),
                        "\"`: each point is the base scheme with one option changed (same features, pairs and split; "
                        "fresh keys per point). Strongest template-only attacker: the larger D_sys of the template "
                        "cosine and the masked-overlap attackers. Best projection attack: the higher acceptance of the two stolen-token "
                        "attacks of section 4.\n\n",
                        sweep_md(r));
    }
    absl::StrAppend(&s, "\n## Plots\n\n");
    if (plots_note.empty()) {
        absl::StrAppend(&s, "![DET](det.png) ![ROC](roc.png)\n\n![score histograms](scores.png)\n\n"
                            "![unlinkability](unlinkability.png)\n\n![rank-1 against gallery size](rank1_gallery.png)\n");
        if (!r.sweep.empty()) absl::StrAppend(&s, "\n![sweep](sweep.png)\n");
    } else {
        absl::StrAppend(&s, "Plots were not drawn: ", plots_note, "\n");
    }
    absl::StrAppend(&s, "\n## Files\n\nreport.json (every figure), roc.csv, scores.csv (histograms), unlinkability.csv "
                        "(D(s) and the densities), rank1_gallery.csv, sweep.csv.\n");
    return write(dir, "report.md", s);
}

absl::Status draw_plots(const std::string& dir) {
    namespace fs = std::filesystem;
    const std::string python = "/usr/bin/python3";
    if (access(python.c_str(), X_OK) != 0) return absl::NotFoundError(python + " is not there");
    // Where the package is: $PYTHONPATH, else beside the program.
    std::vector<std::string> path;
    if (const char* env = std::getenv("PYTHONPATH"); env && *env) path.emplace_back(env);
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const fs::path up = exe.parent_path().parent_path();
        std::vector<fs::path> candidates = {up / "python"};
        for (const fs::path lib : {up / "lib", up / "lib64", up / "local" / "lib"}) {
            for (auto it = fs::directory_iterator(lib, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
                if (it->path().filename().string().rfind("python3", 0) != 0) continue;
                candidates.push_back(it->path() / "dist-packages");
                candidates.push_back(it->path() / "site-packages");
            }
            ec.clear();
        }
        for (const fs::path& c : candidates) {
            if (!fs::exists(c / "pslerp" / "plots.py", ec)) continue;
            if (std::find(path.begin(), path.end(), c.string()) == path.end()) path.push_back(c.string());
        }
    }
    if (path.empty()) {
        return absl::NotFoundError("the pslerp Python package was not found (set PYTHONPATH to the folder holding pslerp/)");
    }
    const std::string log = (fs::path(dir) / "plots.log").string();
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e)
        if (std::strncmp(*e, "PYTHONPATH=", 11) != 0) env_strings.emplace_back(*e);
    env_strings.push_back("PYTHONPATH=" + absl::StrJoin(path, ":"));
    env_strings.push_back("MPLBACKEND=Agg");
    std::vector<char*> envp;
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string a0 = python, a1 = "-m", a2 = "pslerp.plots", a3 = dir;
    char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, python.c_str(), &fa, nullptr, argv, envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return absl::InternalError(absl::StrCat("cannot run ", python, ": ", std::strerror(rc)));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        fs::remove(log, ec);
        return absl::OkStatus();
    }
    absl::StatusOr<std::string> text = read_whole_file(log, 1 << 20);
    std::string tail = text.ok() ? *text : "";
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
    const size_t nl = tail.rfind('\n');
    if (nl != std::string::npos) tail = tail.substr(nl + 1);
    return absl::InternalError(absl::StrCat(python, " -m pslerp.plots failed (", tail.empty() ? "no message" : tail,
                                            "; PYTHONPATH=", absl::StrJoin(path, ":"), "; full output in plots.log)"));
}

}  // namespace pslerp
