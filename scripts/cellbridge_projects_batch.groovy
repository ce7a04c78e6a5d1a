/**
 * CellBridge over several QuPath projects (QuPath 0.6, Automate > Script editor > Run; no project needs to be
 * open). The projects are listed in a text file, one project.qpproj (or project folder) per line; blank lines
 * and lines starting with # are ignored.
 *
 * For each image of each project: open it, run the model (under its top-level annotations, or the whole image),
 * save it, mark it as done in its project entry, and write its row to the counts CSV (objects per class per
 * image; rewritten after every image, atomically). Resumable: images already done with the same model and
 * parameters are skipped, so the batch can be stopped and started again. A failing image (missing file, ...)
 * gets status "failed" with the reason, and the batch goes on.
 *
 * From a shell, without the GUI (QuPath's own command line; the arguments replace the two paths below):
 *   QuPath script cellbridge_projects_batch.groovy --args /data/cellbridge/projects.txt --args /data/cellbridge/counts.csv
 *
 * Without QuPath, `cellbridge batch PROJECT.qpproj ... --model nuclei-brightfield --out-dir DIR` does the same from
 * Python, writing one GeoJSON per image instead of saving the projects.
 */
import qupath.ext.cellbridge.CellBridge
import qupath.ext.cellbridge.scripting.ProjectBatch

// ---- parameters --------------------------------------------------------------------------------------------
def projectList = args.length > 0 ? args[0] : "/data/cellbridge/projects.txt"   // one project.qpproj per line
def csv = args.length > 1 ? args[1] : "/data/cellbridge/counts.csv"
def cellbridge = CellBridge.builder("nuclei-brightfield")
        .device("auto")
        .tileSize(1024)
        .overlap(64)
        .cellExpansion(3.0)
        .build()
// -----------------------------------------------------------------------------------------------------------

def projects = ProjectBatch.readProjectList(projectList)
println "CellBridge: ${projects.size()} projects from ${projectList}"
def rows = ProjectBatch.runProjects(cellbridge, projects, csv)
def byStatus = rows.countBy { it.status() }
println "Done: ${byStatus}; counts in ${csv}"
rows.findAll { it.status() == "failed" }.each { println "FAILED ${it.project()} / ${it.image()}: ${it.error()}" }
