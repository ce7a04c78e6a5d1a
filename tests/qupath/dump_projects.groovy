/**
 * Test helper, run by QuPath's command line (`QuPath script dump_projects.groovy --args ...`): write what QuPath
 * reads back from saved projects as JSON, for the tests to check.
 * args: the JSON file to write, then project.qpproj files.
 * Per image: its entry metadata, each top-level annotation (name, detections under it with their classes and
 * measurement names, centroids of their nuclei), and the detections that are under no annotation.
 */
import qupath.lib.io.GsonTools
import qupath.lib.projects.ProjectIO

import java.awt.image.BufferedImage

def nucleusOrRoi(object) {
    return object.isCell() && object.getNucleusROI() != null ? object.getNucleusROI() : object.getROI()
}

def summary(objects) {
    def classes = [:].withDefault { 0 }
    objects.each { classes[it.getPathClass() == null ? "" : it.getPathClass().toString()]++ }
    def measurements = objects.collect { it.getMeasurementList().getNames() as Set }.inject(null) { a, b -> a == null ? b : a.intersect(b) }
    return [count: objects.size(), classes: classes, cells: objects.count { it.isCell() && it.getNucleusROI() != null },
            measurements: (measurements ?: []) as List,
            centroids: objects.collect { nucleusOrRoi(it) }.collect { [it.getCentroidX(), it.getCentroidY()] }]
}

def out = [:]
for (path in args.drop(1)) {
    def project = ProjectIO.loadProject(new File(path), BufferedImage.class)
    def images = [:]
    for (entry in project.getImageList()) {
        def image = [metadata: new LinkedHashMap(entry.getMetadata()), saved: entry.hasImageData()]
        if (entry.hasImageData()) {
            def hierarchy = entry.readHierarchy()
            def root = hierarchy.getRootObject()
            image.annotations = root.getChildObjects().findAll { it.isAnnotation() }.collect { annotation ->
                [name: annotation.getName(), detections: summary(annotation.getChildObjects().findAll { it.isDetection() }),
                 nested: annotation.getDescendantObjects(null).count { it.isDetection() && it.getParent() != annotation }]
            }
            image.unparented = summary(root.getChildObjects().findAll { it.isDetection() })
            image.detections = hierarchy.getDetectionObjects().size()
        }
        images[entry.getImageName()] = image
    }
    out[path] = images
}
new File(args[0]).text = GsonTools.getInstance(true).toJson(out)
